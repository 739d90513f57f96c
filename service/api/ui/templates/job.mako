<%inherit file="base.mako"/>
<%namespace file="base.mako" import="badge"/>
<%block name="title">Job ${job.id}</%block>
<nav class="crumbs" aria-label="Breadcrumb"><a href="/ui">Jobs</a> / <code>${job.id}</code></nav>
<div class="head">
  <h1>Job <code>${job.id}</code></h1>
  <div class="actions">
    <button type="button" id="cancel-job" class="danger" data-dialog="cancel-dialog" data-enabled-when="active"${'' if status.is_active() else ' disabled' | n}>Cancel job</button>
    <button type="button" id="register-model" data-dialog="register-dialog" data-enabled-when="completed"${'' if job.status == 'completed' else ' disabled' | n}>Register model</button>
  </div>
</div>
<section id="live" data-live="/ui/jobs/${job.id}?fragment=live" data-mode="swap" data-every="1000">${live()}</section>
<section aria-labelledby="log-title">
  <h2 id="log-title">Log <span id="log-state" class="muted" role="status">connecting…</span></h2>
  <pre id="log" class="log" tabindex="0" aria-label="Run log" data-src="/v1/jobs/${job.id}/logs?follow=true"></pre>
</section>
<dialog id="cancel-dialog" aria-labelledby="cancel-title">
  <form method="dialog" data-action="/v1/jobs/${job.id}/cancel">
    <h2 id="cancel-title">Cancel this job?</h2>
    <p>The run is stopped and the job ends <em>canceled</em>. This cannot be undone.</p>
    <p class="error" role="alert"></p>
    <div class="buttons"><button value="back" formnovalidate>Keep it running</button><button value="confirm" class="danger">Cancel job</button></div>
  </form>
</dialog>
<dialog id="register-dialog" aria-labelledby="register-title">
  <form method="dialog" data-action="/v1/jobs/${job.id}/models">
    <h2 id="register-title">Register a model from this job</h2>
    <label for="model-name">Model name</label>
    <input id="model-name" name="model_name" required pattern="[A-Za-z0-9][A-Za-z0-9._\-]*" autocomplete="off">
    <label for="model-path">File in the run's outputs</label>
    <input id="model-path" name="model_path" required list="outputs" autocomplete="off">
    <p class="error" role="alert"></p>
    <div class="buttons"><button value="back" formnovalidate>Back</button><button value="confirm">Register</button></div>
  </form>
</dialog>
<%def name="live()">
<div data-status="${job.status}"${' data-active="1"' if status.is_active() else '' | n}>
<p class="lead">${badge(job.status)}
  % if job.backend_status and job.backend_status != job.status:
  <span class="muted">backend: ${job.backend_status}</span>
  % endif
  % if job.sweep_id:
  · child of sweep <a href="/ui/sweeps/${job.sweep_id}"><code>${job.sweep_id}</code></a>
  % endif
</p>
% if job.error:
<p class="error">${job.error}</p>
% endif
% if job.last_error:
<p class="warn">Last problem: ${job.last_error}</p>
% endif
<div class="grid">
<section aria-labelledby="about-title">
  <h2 id="about-title">About</h2>
  <dl class="facts">
    <dt>Experiment</dt><dd>${job.experiment}</dd>
    <dt>Target</dt><dd>${job.compute_target}</dd>
    <dt>Script</dt><dd><code>${job.source}/${job.script}</code></dd>
    <dt>Environment</dt><dd>${job.environment} v${job.environment_version}</dd>
    <dt>Arguments</dt><dd><code>${" ".join(views.argument_text(a) for a in job.arguments) or "—"}</code></dd>
    <dt>Tags</dt><dd>${", ".join(f"{k}: {v}" for k, v in job.tags.items()) or "—"}</dd>
    <dt>Run id</dt><dd><code>${job.run_id or "—"}</code></dd>
    <dt>Attempt</dt><dd>${job.attempt} of ${job.max_retries + 1}</dd>
    <dt>Duration</dt><dd>${views.duration(job.started_at, job.ended_at)}</dd>
    <dt>Exit code</dt><dd>${"—" if job.exit_code is None else job.exit_code}</dd>
  </dl>
</section>
<section aria-labelledby="timeline-title">
  <h2 id="timeline-title">Timeline (UTC)</h2>
  <ol class="timeline">
    % for step in steps:
    <li class="s-${step.status}"><span class="dot" aria-hidden="true">${views.ICONS.get(step.status, "•")}</span>
      <strong>${step.label}</strong> <time>${step.at}</time>
      % if step.note:
      <div class="muted">${step.note}</div>
      % endif
    </li>
    % endfor
  </ol>
</section>
</div>
<section aria-labelledby="metrics-title">
  <h2 id="metrics-title">Metrics</h2>
  % if metrics:
  <table class="metrics"><caption class="sr-only">Latest value of each metric</caption>
    <thead><tr><th scope="col">Metric</th><th scope="col">Latest</th></tr></thead>
    <tbody>
    % for name, value in metrics.items():
    <tr><td>${name}</td><td class="num">${views.number(value)}</td></tr>
    % endfor
    </tbody>
  </table>
  <div class="charts">
    % for name, svg in charts.items():
    <figure data-metric="${name}">${svg}<figcaption>${name}</figcaption></figure>
    % endfor
  </div>
  % else:
  <p class="muted">No metrics logged yet.</p>
  % endif
</section>
<div class="grid">
<section aria-labelledby="files-title">
  <h2 id="files-title">Files</h2>
  % if files:
  <ul class="files">
    % for f in files:
    <li><a href="/v1/jobs/${job.id}/files/${views.url_path(f.path)}" download>${f.path}</a> <span class="muted">${"" if f.size is None else f"{f.size:,} bytes"}</span></li>
    % endfor
  </ul>
  % else:
  <p class="muted">No files yet.</p>
  % endif
  <datalist id="outputs">
    % for path in outputs:
    <option value="${path}"></option>
    % endfor
  </datalist>
</section>
<section aria-labelledby="models-title">
  <h2 id="models-title">Models from this job</h2>
  % if models:
  <ul class="models">
    % for m in models:
    <li><a href="/ui/models#model-${m.name}">${m.name}</a> version ${m.version} <span class="muted">(${m.model_path})</span></li>
    % endfor
  </ul>
  % else:
  <p class="muted">None registered.</p>
  % endif
</section>
</div>
</div>
</%def>
