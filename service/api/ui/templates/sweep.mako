<%inherit file="base.mako"/>
<%namespace file="base.mako" import="badge"/>
<%block name="title">Sweep ${sweep.id}</%block>
<nav class="crumbs" aria-label="Breadcrumb"><a href="/ui/sweeps">Sweeps</a> / <code>${sweep.id}</code></nav>
<div class="head">
  <h1>Sweep <code>${sweep.id}</code></h1>
  <div class="actions">
    <button type="button" id="cancel-sweep" class="danger" data-dialog="cancel-dialog" data-enabled-when="open"${'' if open else ' disabled' | n}>Cancel sweep</button>
  </div>
</div>
<section id="live" data-live="${live_url}" data-mode="swap" data-every="1500">${live()}</section>
<dialog id="cancel-dialog" aria-labelledby="cancel-title">
  <form method="dialog" data-action="/v1/sweeps/${sweep.id}/cancel">
    <h2 id="cancel-title">Cancel this sweep?</h2>
    <p>No more children start and the running ones are stopped.</p>
    <p class="error" role="alert"></p>
    <div class="buttons"><button value="back" formnovalidate>Keep it running</button><button value="confirm" class="danger">Cancel sweep</button></div>
  </form>
</dialog>
<%def name="sort_header(key, label)">
<%
    current = view.sort == key
    order = ("asc" if view.descending else "desc") if current else ""
    aria = ("descending" if view.descending else "ascending") if current else "none"
%>
<th scope="col" aria-sort="${aria}"><a href="?sort=${key}${'&order=' + order if order else '' | n}">${label}${(" ↓" if view.descending else " ↑") if current else ""}</a></th>
</%def>
<%def name="live()">
<% p = sweep.progress %>
<div data-status="${sweep.status}"${' data-active="1"' if open else '' | n}>
<p class="lead">${badge(sweep.status)} · experiment ${sweep.job.experiment} · ${sweep.sampling} sampling, ${sweep.goal} <strong>${sweep.primary_metric}</strong></p>
<div class="progress">
  <label for="sweep-progress">Progress</label>
  <progress id="sweep-progress" max="${p.total}" value="${p.done}">${p.done} of ${p.total}</progress>
  <span>${p.done} of ${p.total} done · ${p.active} running · ${p.completed} completed · ${p.failed} failed · ${p.canceled} canceled · ${p.early_terminated} stopped early</span>
</div>
% if sweep.error:
<p class="error">${sweep.error}</p>
% endif
% if sweep.best_job_id:
<p class="best-line"><span aria-hidden="true">★</span> Best: <a href="/ui/jobs/${sweep.best_job_id}"><code>${sweep.best_job_id}</code></a> with ${sweep.primary_metric} = <strong>${views.number(sweep.best_metric)}</strong>
  % if sweep.registered_model:
  · registered as <a href="/ui/models#model-${sweep.registered_model.name}">${sweep.registered_model.name} v${sweep.registered_model.version}</a>
  % endif
</p>
% endif
<div class="table-wrap">
<table class="children cards">
  <caption class="sr-only">Children of the sweep; sort by a column with its header link</caption>
  <thead><tr>
    ${sort_header("index", "#")}
    ${sort_header("status", "Status")}
    % for flag in sweep.search_space:
    <th scope="col">${flag}</th>
    % endfor
    ${sort_header("metric", sweep.primary_metric)}
    <th scope="col">Job</th>
  </tr></thead>
  <tbody>
  % for c in view.children:
  <% best = c.job_id == sweep.best_job_id %>
  <tr id="child-${c.index}" class="${'best' if best else ''}${' stopped' if c.early_terminated else ''}">
    <td data-label="#">${c.index}
      % if best:
      <span class="best-mark" title="best child">★ best</span>
      % endif
    </td>
    <td data-label="Status">
      % if c.early_terminated:
      <span class="status s-stopped"><span aria-hidden="true">⏹</span> stopped early</span> <span class="muted">${c.early_terminated}</span>
      % else:
      ${badge(c.status.value)}
      % endif
    </td>
    % for flag in sweep.search_space:
    <td data-label="${flag}" class="num">${c.params.get(flag, "—")}</td>
    % endfor
    <td data-label="${sweep.primary_metric}" class="num">${views.number(c.primary_metric)}</td>
    <td data-label="Job"><a href="/ui/jobs/${c.job_id}"><code>${c.job_id}</code></a></td>
  </tr>
  % endfor
  % if not view.children:
  <tr><td colspan="${len(sweep.search_space) + 4}">No child has started yet.</td></tr>
  % endif
  </tbody>
</table>
</div>
% if view.charts:
<section aria-labelledby="charts-title">
  <h2 id="charts-title">${sweep.primary_metric} against the searched parameters</h2>
  <div class="charts">
    % for flag, svg in view.charts.items():
    <figure data-param="${flag}">${svg}<figcaption>${sweep.primary_metric} against ${flag}${" (log scale)" if sweep.search_space[flag].type == "loguniform" else ""}; ★ larger dot: best, hollow: stopped early</figcaption></figure>
    % endfor
    <figure class="parallel-figure">${view.parallel}<figcaption>Parallel coordinates: one line per child, the best drawn thick</figcaption></figure>
  </div>
</section>
% endif
</div>
</%def>
