<%inherit file="base.mako"/>
<%block name="title">Models</%block>
<h1>Models</h1>
% for m in models:
<section id="model-${m.name}" class="model" aria-labelledby="model-title-${m.name}">
  <h2 id="model-title-${m.name}">${m.name} <span class="muted">latest v${m.latest_version}, ${m.versions} version${"s" if m.versions != 1 else ""}</span></h2>
  <div class="table-wrap">
  <table class="cards versions">
    <caption class="sr-only">Versions of ${m.name} and where each came from</caption>
    <thead><tr><th scope="col">Version</th><th scope="col">From job</th><th scope="col">Run</th><th scope="col">Experiment</th><th scope="col">Metrics</th><th scope="col">Evaluation</th><th scope="col">File</th><th scope="col">Registered (UTC)</th></tr></thead>
    <tbody>
    % for v in versions[m.name]:
    <tr id="model-${m.name}-v${v.version}">
      <td data-label="Version"><strong>v${v.version}</strong></td>
      <td data-label="From job">
        % if v.job_id:
        <a href="/ui/jobs/${v.job_id}"><code>${v.job_id}</code></a>
        % else:
        —
        % endif
      </td>
      <td data-label="Run"><code>${v.run_id or "—"}</code></td>
      <td data-label="Experiment">${v.experiment or "—"}</td>
      <td data-label="Metrics">${", ".join(f"{k} {views.number(val) if isinstance(val, (int, float)) else val}" for k, val in v.metrics.items()) or "—"}</td>
      <td data-label="Evaluation">
        % if v.evaluation:
        accuracy <strong>${views.number(v.evaluation["accuracy"])}</strong> on ${v.evaluation["dataset"]} v${v.evaluation["dataset_version"]} (${v.evaluation["samples"]} test images) · <a href="#confusion-${m.name}-v${v.version}">matrix</a>
        % else:
        —
        % endif
      </td>
      <td data-label="File"><code>${v.model_path}</code></td>
      <td data-label="Registered">${views.when(v.created_at)}</td>
    </tr>
    % endfor
    </tbody>
  </table>
  </div>
  % for v in versions[m.name]:
  % if v.evaluation:
  <figure class="evaluation" id="confusion-${m.name}-v${v.version}">
    ${views.confusion(m.name, v)}
    <figcaption>v${v.version}: confusion matrix on ${v.evaluation["dataset"]}'s test split (rows: true label, columns: predicted; shade: share of the row), accuracy ${views.number(v.evaluation["accuracy"])}, evaluated ${v.evaluation.get("evaluated_at", "")[:19].replace("T", " ")} UTC</figcaption>
  </figure>
  % endif
  % endfor
</section>
% endfor
% if not models:
<p>No models registered yet. Register one from a completed job's page.</p>
% endif
% if more:
<p class="muted">Showing the first 100 models; the API lists them all (<code>GET /v1/models</code>).</p>
% endif
