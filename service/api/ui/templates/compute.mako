<%inherit file="base.mako"/>
<%block name="title">Compute</%block>
<h1>Compute targets</h1>
<div class="table-wrap">
<table class="cards">
  <caption class="sr-only">Compute targets, their state and the slots in use</caption>
  <thead><tr><th scope="col">Target</th><th scope="col">Kind</th><th scope="col">State</th><th scope="col">Slots in use</th><th scope="col">Nodes</th><th scope="col">VM size</th></tr></thead>
  <tbody>
  % for t in targets:
  <tr id="target-${t.name}">
    <td data-label="Target"><strong>${t.name}</strong></td>
    <td data-label="Kind">${t.kind}</td>
    <td data-label="State">${t.state}
      % if t.error:
      <div class="error">${t.error}</div>
      % endif
    </td>
    <td data-label="Slots in use">
      % if t.max_concurrent:
      <meter min="0" max="${t.max_concurrent}" value="${t.active_jobs}" aria-label="slots in use on ${t.name}">${t.active_jobs}</meter> ${t.active_jobs} of ${t.max_concurrent}
      % else:
      ${t.active_jobs} active
      % endif
    </td>
    <td data-label="Nodes">${"—" if t.max_nodes is None else f"{t.current_nodes if t.current_nodes is not None else '?'} (min {t.min_nodes}, max {t.max_nodes})"}</td>
    <td data-label="VM size">${t.vm_size or "—"}</td>
  </tr>
  % endfor
  </tbody>
</table>
</div>
