<%inherit file="base.mako"/>
<%block name="title">Sign in</%block>
<section class="login">
<h1>Sign in</h1>
<p>This runyard needs an API key. It is checked once; the browser keeps only a session cookie.</p>
<form method="post" action="/ui/login">
  <input type="hidden" name="next" value="${next_url}">
  <label for="key">API key</label>
  <input id="key" name="key" type="password" autocomplete="current-password" required autofocus>
  % if error:
  <p class="error" role="alert">${error}</p>
  % endif
  <button type="submit">Sign in</button>
</form>
</section>
