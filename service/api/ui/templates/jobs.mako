<%inherit file="base.mako"/>
<%namespace file="base.mako" import="badge"/>
<%block name="title">Jobs</%block>
<h1>Jobs</h1>
<form class="filters" method="get" action="/ui" role="search" aria-label="Filter jobs">
  <label>Status
    <select name="status">
      <option value="">any</option>
      % for s in statuses:
      <option${' selected' if s == status else '' | n}>${s}</option>
      % endfor
    </select>
  </label>
  <label>Experiment <input name="experiment" list="experiments" value="${experiment}" autocomplete="off"></label>
  <datalist id="experiments">
    % for name in experiments:
    <option value="${name}"></option>
    % endfor
  </datalist>
  <label>Tag <input name="tag" value="${tag}" placeholder="key:value" autocomplete="off"></label>
  <button type="submit">Filter</button>
  <a href="/ui">Clear</a>
</form>
<div class="table-wrap">
<table class="jobs cards">
  <caption class="sr-only">Jobs, newest first; rows update as the jobs run</caption>
  <thead><tr>
    <th scope="col">Status</th><th scope="col">Job</th><th scope="col">Experiment</th><th scope="col">Target</th>
    <th scope="col">Parameters</th><th scope="col">Metric</th><th scope="col">Created (UTC)</th><th scope="col">Duration</th>
  </tr></thead>
  <tbody id="job-rows" data-live="${rows_url}" data-mode="rows" data-every="1500">${rows_html()}</tbody>
</table>
</div>
<nav class="pager" aria-label="Pages">
  % if paged:
  <a href="${first_url}">← Newest</a>
  % endif
  % if next_url:
  <a href="${next_url}" rel="next">Older →</a>
  % endif
</nav>
<%def name="rows_html()">
% for r in items:
<tr id="job-${r.id}" data-v="${r.version}" data-status="${r.status}">
  <td data-label="Status">${badge(r.status)}</td>
  <td data-label="Job"><a href="/ui/jobs/${r.id}"><code>${r.id}</code></a>
    % if r.sweep_id:
    <a class="chip" href="/ui/sweeps/${r.sweep_id}">sweep</a>
    % endif
  </td>
  <td data-label="Experiment">${r.experiment}</td>
  <td data-label="Target">${r.target}</td>
  <td data-label="Parameters"><code>${r.params}</code></td>
  <td data-label="Metric" class="num">${r.metric}</td>
  <td data-label="Created">${r.created}</td>
  <td data-label="Duration" class="num">${r.duration}</td>
</tr>
% endfor
% if not items:
<tr id="no-jobs" data-v="0"><td colspan="8">No jobs here yet. Submit one with <code>runyard jobs submit</code> or <code>POST /v1/jobs</code>.</td></tr>
% endif
</%def>
<%def name="rows()">${rows_html()}</%def>
