<%inherit file="base.mako"/>
<%block name="title">${title}</%block>
<h1>${title}</h1>
<p role="alert">${detail}</p>
<p><a href="/ui">Back to the jobs</a></p>
