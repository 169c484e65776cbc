// The page of `lldiff serve`: forms that POST a run's options to the API,
// read its stream of NDJSON events (docs/serve.md) to show the queue and
// progress, and draw the document with the report's views
// (window.lldiff.render, /static/app.js; its header has the JSON
// download). Cancel aborts the request, which stops the run on the server.
(function () {
  'use strict';

  var current = null; // {controller} of the run under way
  var last = null; // {kind, doc} of the result shown

  function $(id) { return document.getElementById(id); }

  function setStatus(text) { $('status').textContent = text; }

  function showError(text) {
    var el = $('error');
    el.textContent = text;
    el.hidden = !text;
  }

  function setBusy(busy) {
    $('cancel').hidden = !busy;
    $('progress').hidden = !busy;
    document.querySelectorAll('.serve-form button[type=submit]').forEach(function (b) { b.disabled = busy; });
  }

  // options reads a form into the API's options: empty fields are left out
  // (the server applies the command's defaults), numbers are numbers,
  // checkboxes booleans, data-lines textareas lists of non-empty lines,
  // data-list inputs lists split at "|".
  function options(form) {
    var o = {};
    form.querySelectorAll('input, textarea, select').forEach(function (el) {
      if (!el.name) { return; }
      if (el.type === 'checkbox') {
        if (el.checked) { o[el.name] = true; }
        return;
      }
      var v = el.value;
      if (v === '') { return; }
      if (el.dataset.lines) {
        o[el.name] = v.split('\n').map(function (s) { return s.replace(/\r$/, ''); }).filter(function (s) { return s.trim() !== ''; });
      } else if (el.dataset.list) {
        o[el.name] = v.split('|').filter(function (s) { return s !== ''; });
      } else if (el.type === 'number') {
        o[el.name] = Number(v);
      } else {
        o[el.name] = v;
      }
    });
    return o;
  }

  function handle(kind, ev) {
    switch (ev.event) {
      case 'queued':
        setStatus('queued: ' + ev.position + ' ahead');
        break;
      case 'started':
        setStatus('running ' + kind + '…');
        break;
      case 'progress':
        $('progress').max = Math.max(ev.total, 1);
        $('progress').value = ev.done;
        setStatus('running ' + kind + ': ' + ev.done + '/' + ev.total);
        break;
      case 'result':
        show(kind, ev.document);
        break;
      case 'error':
        showError(ev.error);
        setStatus('failed (' + ev.status + ')');
        break;
    }
  }

  function show(kind, doc) {
    last = {kind: kind, doc: doc};
    var el = $('result');
    el.textContent = '';
    el.dataset.kind = kind;
    window.lldiff.render(el, kind, doc);
    setStatus(kind + ' done');
    $('save-html').hidden = false;
  }

  async function run(kind, body) {
    if (current) { return; }
    var controller = new AbortController();
    current = {controller: controller};
    showError('');
    setBusy(true);
    $('progress').removeAttribute('value');
    setStatus('waiting for the model…');
    try {
      var res = await fetch('/api/' + kind, {
        method: 'POST',
        headers: {'Content-Type': 'application/json', 'Accept': 'application/x-ndjson'},
        body: JSON.stringify(body),
        signal: controller.signal
      });
      var type = res.headers.get('Content-Type') || '';
      if (!res.ok || type.indexOf('application/x-ndjson') !== 0) {
        var msg = res.status + ' ' + res.statusText;
        try { msg = (await res.json()).error; } catch (e) { /* not JSON */ }
        var retry = res.headers.get('Retry-After');
        throw new Error(msg + (retry ? ' (retry in ' + retry + ' s)' : ''));
      }
      var reader = res.body.getReader();
      var decoder = new TextDecoder();
      var buf = '';
      for (;;) {
        var chunk = await reader.read();
        if (chunk.done) { break; }
        buf += decoder.decode(chunk.value, {stream: true});
        var i;
        while ((i = buf.indexOf('\n')) >= 0) {
          var line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          if (line.trim() !== '') { handle(kind, JSON.parse(line)); }
        }
      }
    } catch (e) {
      if (e.name === 'AbortError') {
        setStatus('cancelled');
      } else {
        showError(e.message);
        setStatus('failed');
      }
    } finally {
      current = null;
      setBusy(false);
    }
  }

  function download(name, blob) {
    var a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(function () { URL.revokeObjectURL(a.href); }, 10000);
  }

  async function saveHTML() {
    if (!last) { return; }
    try {
      var res = await fetch('/api/render?kind=' + encodeURIComponent(last.kind), {
        method: 'POST',
        headers: {'Content-Type': 'application/json'},
        body: JSON.stringify(last.doc)
      });
      if (!res.ok) { throw new Error((await res.json()).error); }
      download(last.kind + '.html', await res.blob());
    } catch (e) {
      showError('saving the HTML report: ' + e.message);
    }
  }

  function selectTab(name) {
    document.querySelectorAll('[data-tab]').forEach(function (b) {
      b.setAttribute('aria-selected', String(b.dataset.tab === name));
    });
    document.querySelectorAll('.serve-form').forEach(function (f) { f.hidden = f.dataset.kind !== name; });
  }

  document.querySelectorAll('[data-tab]').forEach(function (b) {
    b.addEventListener('click', function () { selectTab(b.dataset.tab); });
  });
  document.querySelectorAll('.serve-form').forEach(function (form) {
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      run(form.dataset.kind, options(form));
    });
  });
  $('cancel').addEventListener('click', function () {
    if (current) { current.controller.abort(); }
  });
  $('save-html').addEventListener('click', saveHTML);

  fetch('/api/info').then(function (r) { return r.json(); }).then(function (info) {
    $('model').textContent = info.model;
    document.title = 'lldiff serve — ' + info.model.split(/[\\/]/).pop();
  }).catch(function (e) { showError('reading /api/info: ' + e.message); });
})();
