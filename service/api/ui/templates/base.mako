<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="${csrf}">
<title><%block name="title"/> · runyard</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/ui/static/ui.css?v=${asset_version}">
<script src="/ui/static/ui.js?v=${asset_version}" defer></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top">
  <nav aria-label="Main">
    <a class="brand" href="/ui">runyard</a>
    % for key, label, href in (("jobs", "Jobs", "/ui"), ("sweeps", "Sweeps", "/ui/sweeps"), ("models", "Models", "/ui/models"), ("compute", "Compute", "/ui/compute")):
    <a href="${href}"${' aria-current="page"' if section == key else '' | n}>${label}</a>
    % endfor
    <a href="/docs">API</a>
    % if signed_in:
    <form class="signout" method="post" action="/ui/logout"><input type="hidden" name="csrf" value="${csrf}"><button type="submit">Sign out</button></form>
    % endif
  </nav>
</header>
<main id="main" tabindex="-1">
${next.body()}
</main>
<div id="toast" role="status" aria-live="polite"></div>
</body>
</html>
<%def name="badge(status)"><span class="status s-${status}"><span aria-hidden="true">${views.ICONS.get(status, "•")}</span> ${status}</span></%def>
