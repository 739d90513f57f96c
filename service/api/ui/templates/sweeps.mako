<%inherit file="base.mako"/>
<%namespace file="base.mako" import="badge"/>
<%block name="title">Sweeps</%block>
<h1>Sweeps</h1>
<div class="table-wrap">
<table class="cards">
  <caption class="sr-only">Sweeps, newest first</caption>
  <thead><tr><th scope="col">Status</th><th scope="col">Sweep</th><th scope="col">Experiment</th><th scope="col">Progress</th><th scope="col">Primary metric</th><th scope="col">Best</th><th scope="col">Created (UTC)</th></tr></thead>
  <tbody>
  % for s in sweeps:
  <tr>
    <td data-label="Status">${badge(s.status)}</td>
    <td data-label="Sweep"><a href="/ui/sweeps/${s.id}"><code>${s.id}</code></a></td>
    <td data-label="Experiment">${s.job.experiment}</td>
    <td data-label="Progress">${s.progress.done} / ${s.progress.total}</td>
    <td data-label="Primary metric">${s.goal} ${s.primary_metric}</td>
    <td data-label="Best" class="num">${views.number(s.best_metric)}</td>
    <td data-label="Created">${views.when(s.created_at)}</td>
  </tr>
  % endfor
  % if not sweeps:
  <tr><td colspan="7">No sweeps yet. Start one with <code>runyard sweeps create</code> or <code>POST /v1/sweeps</code>.</td></tr>
  % endif
  </tbody>
</table>
</div>
% if next_url:
<nav class="pager" aria-label="Pages"><a href="${next_url}" rel="next">Older →</a></nav>
% endif
