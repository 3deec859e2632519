/* INcDb upload panel: streams each chosen or dropped file to POST /upload/<collection> as the raw request body
 * (never through dcc.Upload, which holds files in memory as base64), one file at a time, with byte progress.
 *
 * The drop zone (.incdb-dropzone) carries data-upload-url, data-max-bytes and data-accept (comma-separated name
 * endings; a token with "*" or "?" is a whole-name pattern: "*" any characters, "?" one), and optionally
 * data-list (the id of the container for the files' rows; default coll-upload-progress, a container no callback
 * renders into, so React leaves our rows alone), data-done-store (the Store that receives {ok, failed, t, last}
 * when a batch ends, last being the server's answer to the last file that went through; default coll-uploaded),
 * data-single ("1": one file at a time, as the public decoder takes) and data-resumable-url (web/upload.py's
 * POST /upload/<collection>/resumable). The "choose files" button is #coll-choose or any .incdb-upload-choose
 * inside the zone. While files are uploading, leaving the page (reload, close, or a link inside the app) asks
 * first.
 *
 * Resumable uploads: with data-resumable-url, a file larger than RESUMABLE_ABOVE goes in chunks (the server says
 * how large), each PUT with Upload-Offset. When a chunk gets no answer (the connection broke, the server is
 * restarting) the panel waits, asks the server for the offset it holds and goes on from there, for as long as
 * RETRY_FOR_MS passes without progress; the curator does nothing. The upload's URL is kept in localStorage under
 * the file's name, size and date, so choosing the same file again after a reload goes on where it stopped too.
 */
(function () {
  "use strict";

  var RESUMABLE_ABOVE = 8 * 1024 * 1024;  // larger files go in chunks where the zone allows it
  var RETRY_FOR_MS = 10 * 60 * 1000;      // a resumable upload gives up after this long without progress
  var MAX_WAIT_MS = 10000;                // the longest pause between two tries to reach the server

  var inflight = [];          // XHRs being sent
  var sending = 0;            // files being sent (a resumable upload waiting to reconnect has no XHR in flight)
  var queued = 0;             // files waiting for their turn
  var generation = 0;         // bumped when the curator leaves: batches of an older generation stop
  window.incdbUploadLog = []; // [file name, bytes sent, bytes total] for every progress event (tests read it)
  window.incdbUploadResumes = []; // [file name, offset held by the server] each time an upload went on after a break

  function busy() { return inflight.length > 0 || sending > 0 || queued > 0; }

  function csrfToken() {
    var match = document.cookie.match(/(?:^|;\s*)_csrf_token=([^;]*)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function human(n) {
    var units = ["bytes", "KB", "MB", "GB"];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return i === 0 ? n + " bytes" : n.toFixed(1) + " " + units[i];
  }

  // The same rules as the server's (web/upload.py), so that such a file is refused before it is sent.
  var NAME_LIMIT = 255;
  var BAD_NAME_CHAR = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

  function nameProblem(name) {
    var bad = name.match(BAD_NAME_CHAR);
    if (bad) {
      var code = bad[0].charCodeAt(0).toString(16).toUpperCase();
      return "the file name contains the control character U+" + ("0000" + code).slice(-4) +
        ". Rename the file and upload it again.";
    }
    var length = Array.from(name).length;  // characters, not UTF-16 units, as the server counts them
    if (length > NAME_LIMIT) {
      return "the file name is " + length + " characters long; the limit is " + NAME_LIMIT +
        ". Rename the file and upload it again.";
    }
    return "";
  }

  // Answers without a JSON error come from the proxy in front of the app (nginx), not from the app.
  // What the server confirmed about a file (MELODIC files skipped, time courses matched): plain lines, not warnings.
  function notesText(body) {
    return (body.notes || []).length ? ". " + body.notes.join(". ") : "";
  }

  function statusMessage(status) {
    var known = {
      408: "The upload was too slow, and the server stopped waiting for it. Check the connection and upload the " +
        "file again.",
      413: "The file is larger than the server accepts.",
      429: "Too many uploads at the same time from this address. Wait until one has finished, then upload this " +
        "file again.",
      502: "The server is not answering (it may be restarting). Upload the file again in a minute.",
      503: "The server is busy. Upload the file again in a minute.",
      504: "The server took too long to answer. Upload the file again in a minute.",
    };
    return known[status] || ("The server answered " + status + ".");
  }

  function globMatches(pattern, name) {  // "*": any characters, "?": one character
    var source = pattern.split("").map(function (ch) {
      if (ch === "*") { return ".*"; }
      if (ch === "?") { return "."; }
      return ch.replace(/[.+^${}()|[\]\\]/g, "\\$&");
    }).join("");
    return new RegExp("^" + source + "$").test(name);
  }

  function accepted(name, accept) {
    var low = name.toLowerCase();
    return accept.split(",").some(function (token) {
      token = token.trim().toLowerCase();
      if (/[*?]/.test(token)) { return globMatches(token, low); }
      return token && low.endsWith(token);
    });
  }

  // The file picker's filter: the endings among the tokens, and a pattern's ending ("*.txt" gives ".txt").
  function pickerEndings(accept) {
    var endings = [];
    accept.split(",").forEach(function (token) {
      token = token.trim();
      var tail = token.slice(Math.max(token.lastIndexOf("*"), token.lastIndexOf("?")) + 1);
      if (tail.charAt(0) === "." && endings.indexOf(tail) < 0) { endings.push(tail); }
    });
    return endings.join(",");
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function makeRow(list, file) {
    var row = el("div", "incdb-upload-row");
    row.setAttribute("data-file", file.name);
    row.setAttribute("data-state", "queued");
    var head = el("div", "d-flex justify-content-between small");
    head.appendChild(el("span", "text-break me-2 fw-semibold", file.name));
    var status = el("span", "incdb-upload-status text-muted text-nowrap", "waiting · " + human(file.size));
    head.appendChild(status);
    var outer = el("div", "progress mt-1");
    outer.style.height = "0.6rem";
    var bar = el("div", "progress-bar");
    bar.setAttribute("role", "progressbar");
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "100");
    bar.setAttribute("aria-valuenow", "0");
    bar.style.width = "0%";
    outer.appendChild(bar);
    var detail = el("div", "incdb-upload-detail small");
    row.appendChild(head);
    row.appendChild(outer);
    row.appendChild(detail);
    list.appendChild(row);
    return {
      row: row,
      progress: function (sent, total) {
        var pct = total ? Math.floor((100 * sent) / total) : 0;
        bar.style.width = pct + "%";
        bar.setAttribute("aria-valuenow", String(pct));
        status.textContent = human(sent) + " of " + human(total) + " (" + pct + "%)";
      },
      state: function (state, text, detailText, tone) {
        row.setAttribute("data-state", state);
        bar.classList.toggle("progress-bar-striped", state === "reconnecting");
        bar.classList.toggle("progress-bar-animated", state === "reconnecting");
        status.textContent = text;
        status.className = "incdb-upload-status text-nowrap " + (tone ? "text-" + tone : "text-muted");
        if (state === "done") { bar.classList.add("bg-success"); bar.style.width = "100%"; }
        if (state === "error") { bar.classList.add("bg-danger"); }
        detail.textContent = detailText || "";
        detail.className = "incdb-upload-detail small " + (state === "error" ? "text-danger" : "text-muted");
      },
    };
  }

  function send(url, file, ui) {
    return new Promise(function (resolve) {
      var xhr = new XMLHttpRequest();
      xhr.open("POST", url + (url.indexOf("?") >= 0 ? "&" : "?") + "name=" + encodeURIComponent(file.name));
      xhr.setRequestHeader("X-CSRFToken", csrfToken());
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.upload.onprogress = function (event) {
        window.incdbUploadLog.push([file.name, event.loaded, event.total]);
        ui.progress(event.loaded, event.lengthComputable ? event.total : file.size);
      };
      // Sent: the server now checks the whole file (behind nginx it first receives it from nginx).
      xhr.upload.onload = function () { ui.state("uploading", "checking the file…"); };
      function done(ok, message, detail, body) {
        inflight = inflight.filter(function (x) { return x !== xhr; });
        ui.state(ok ? "done" : "error", ok ? "uploaded" : "failed", ok ? detail : message, ok ? "success" : "danger");
        resolve(ok ? (body || {}) : null);
      }
      xhr.onload = function () {
        var body = {};
        try { body = JSON.parse(xhr.responseText); } catch (e) { body = {}; }
        if ((xhr.status === 200 || xhr.status === 202) && body.ok) {
          var warnings = (body.warnings || []).length;
          var what = body.maps !== undefined ? body.maps + " map(s)" : (body.status || "received");
          done(true, "", what + (warnings ? "; " + warnings + " warning(s): " + body.warnings.join("; ") : "") +
            notesText(body), body);
        } else {
          done(false, body.error || statusMessage(xhr.status));
        }
      };
      xhr.onerror = function () {
        done(false, "The connection broke during the upload, or the server ended it (it refuses uploads that " +
          "arrive too slowly or take too long). Check the connection and upload the file again.");
      };
      xhr.onabort = function () { done(false, "Upload stopped."); };
      inflight.push(xhr);
      ui.state("uploading", "starting…");
      xhr.send(file);
    });
  }

  // --- resumable uploads (web/upload.py: POST .../resumable, GET and PUT .../resumable/<token>) ---------------

  var NO_ANSWER = "The connection broke during the upload, or the server ended it (it refuses uploads that " +
    "arrive too slowly or take too long). Check the connection and upload the file again.";

  function sleep(ms) { return new Promise(function (resolve) { window.setTimeout(resolve, ms); }); }

  function remembered(key, value) {
    try {  // localStorage may be off (private windows, policies): then a reload starts the file again
      if (value === undefined) { return window.localStorage.getItem(key); }
      if (value === null) { window.localStorage.removeItem(key); } else { window.localStorage.setItem(key, value); }
    } catch (e) { return null; }
    return null;
  }

  // One request; resolves {status, body, retryAfter, aborted}. Status 0: no answer (connection broken, server down).
  function request(method, url, body, headers, onprogress) {
    return new Promise(function (resolve) {
      var xhr = new XMLHttpRequest();
      var aborted = false;
      xhr.open(method, url);
      xhr.setRequestHeader("X-CSRFToken", csrfToken());
      Object.keys(headers || {}).forEach(function (name) { xhr.setRequestHeader(name, headers[name]); });
      if (onprogress) { xhr.upload.onprogress = onprogress; }
      function finish(status) {
        inflight = inflight.filter(function (x) { return x !== xhr; });
        var parsed = {};
        try { parsed = JSON.parse(xhr.responseText) || {}; } catch (e) { parsed = {}; }
        resolve({ status: status, body: parsed, aborted: aborted,
          retryAfter: Number((status && xhr.getResponseHeader("Retry-After")) || 0) });
      }
      xhr.onload = function () { finish(xhr.status); };
      xhr.onerror = function () { finish(0); };
      xhr.onabort = function () { aborted = true; finish(0); };
      inflight.push(xhr);
      xhr.send(body === undefined ? null : body);
    });
  }

  // Answers worth trying again: none at all, too slow, another request still writing, slots or server busy.
  function transient(status) { return [0, 408, 423, 429, 502, 503, 504].indexOf(status) >= 0; }

  function sendResumable(start, file, ui, wanted) {
    var key = "incdb-upload:" + start + "|" + file.name + "|" + file.size + "|" + file.lastModified;
    var url = null;
    var chunk = RESUMABLE_ABOVE;
    var offset = 0;
    var lastProgress = Date.now();
    var failures = 0;

    function stopped() { ui.state("error", "stopped", "Upload stopped.", "danger"); return null; }

    function over(status, body) {  // the server's last word on this file: stored, or refused
      remembered(key, null);
      if (status === 200 && body.ok && body.upload) {
        var warnings = (body.warnings || []).length;
        ui.state("done", "uploaded", body.maps + " map(s)" +
          (warnings ? "; " + warnings + " warning(s): " + body.warnings.join("; ") : "") + notesText(body), "success");
        return body;
      }
      ui.state("error", "failed", body.error || statusMessage(status), "danger");
      return null;
    }

    function held(body) {  // the server's status of the upload: go on from its offset, or take its answer
      if (body.done) { return over(body.status, body.result || {}); }
      offset = body.offset;
      chunk = body.chunk_bytes || chunk;
      window.incdbUploadResumes.push([file.name, offset]);
      return next();
    }

    function create() {
      return request("POST", start + "?name=" + encodeURIComponent(file.name), null,
        { "Upload-Length": String(file.size) }).then(function (r) {
        if (r.aborted || !wanted()) { return stopped(); }
        if (r.status !== 201 || !r.body.ok) { return over(r.status, r.status ? r.body : { error: NO_ANSWER }); }
        url = r.body.url;
        chunk = r.body.chunk_bytes || chunk;
        remembered(key, url);
        return next();
      });
    }

    function next() {
      if (!wanted()) { return stopped(); }
      var from = offset;
      var to = Math.min(file.size, from + chunk);
      ui.state("uploading", "");
      ui.progress(from, file.size);
      return request("PUT", url, file.slice(from, to),
        { "Upload-Offset": String(from), "Content-Type": "application/octet-stream" }, function (event) {
          window.incdbUploadLog.push([file.name, from + event.loaded, file.size]);
          ui.progress(from + event.loaded, file.size);
          if (to === file.size && event.loaded === event.total) { ui.state("uploading", "checking the file…"); }
        }).then(answered);
    }

    function answered(r) {
      if (r.aborted || !wanted()) { return stopped(); }
      if (r.status === 200 && r.body.ok && r.body.upload) { return over(200, r.body); }
      if ((r.status === 200 || r.status === 409) && typeof r.body.offset === "number") {
        if (r.body.offset > offset) { lastProgress = Date.now(); failures = 0; }
        offset = r.body.offset;
        return next();
      }
      return transient(r.status) ? reconnect(r) : over(r.status, r.body);
    }

    function reconnect(r) {
      if (Date.now() - lastProgress > RETRY_FOR_MS) { return over(r.status, r.status ? r.body : { error: NO_ANSWER }); }
      failures += 1;
      var wait = Math.min(r.retryAfter ? r.retryAfter * 1000 : 1000 * Math.pow(2, failures - 1), MAX_WAIT_MS);
      ui.state("reconnecting", "reconnecting…", "The connection to the server broke (or the server is " +
        "restarting). The upload goes on by itself from the last byte the server holds.", "warning");
      return sleep(wait).then(function () {
        return wanted() ? request("GET", url) : { aborted: true };
      }).then(function (s) {
        if (s.aborted || !wanted()) { return stopped(); }
        if (s.status === 200 && s.body.ok) {
          if (s.body.offset > offset) { lastProgress = Date.now(); failures = 0; }
          return held(s.body);
        }
        return transient(s.status) ? reconnect(s) : over(s.status, s.body);
      });
    }

    ui.state("uploading", "starting…");
    var saved = remembered(key);
    if (!saved) { return create(); }
    return request("GET", saved).then(function (s) {
      if (s.aborted || !wanted()) { return stopped(); }
      if (s.status === 200 && s.body.ok && s.body.size === file.size) { url = saved; return held(s.body); }
      remembered(key, null);  // gone (expired, or from another account): start again
      return create();
    });
  }

  function setProps(id, props) {
    if (window.dash_clientside && window.dash_clientside.set_props) {
      window.dash_clientside.set_props(id, props);
    }
  }

  function uploadAll(zone, files) {
    var list = document.getElementById(zone.getAttribute("data-list") || "coll-upload-progress");
    if (!list || !files.length) { return; }
    var single = zone.getAttribute("data-single") === "1";
    var url = zone.getAttribute("data-upload-url");
    var resumable = zone.getAttribute("data-resumable-url");
    var limit = Number(zone.getAttribute("data-max-bytes") || 0);
    var accept = zone.getAttribute("data-accept") || "";
    var jobs = [];
    files.forEach(function (file, index) {
      var ui = makeRow(list, file);
      var problem = nameProblem(file.name);
      if (single && index > 0) {
        ui.state("error", "refused", file.name + ": one file at a time here; send it on its own.", "danger");
      } else if (problem) {
        ui.state("error", "refused", file.name + ": " + problem, "danger");
      } else if (!accepted(file.name, accept)) {
        ui.state("error", "refused", file.name + ": unsupported file type; upload " + accept.replace(/,/g, ", ") +
          " files.", "danger");
      } else if (limit && file.size > limit) {
        ui.state("error", "refused", file.name + " (" + human(file.size) + ") is larger than the limit of " +
          human(limit) + ".", "danger");
      } else if (file.size === 0) {
        ui.state("error", "refused", file.name + ": the file is empty.", "danger");
      } else {
        jobs.push({ file: file, ui: ui });
      }
    });
    if (!jobs.length) { return; }
    queued += jobs.length;
    var ok = 0;
    var failed = 0;
    var last = null;
    var mine = generation;
    jobs.reduce(function (previous, job) {
      return previous.then(function () {
        if (mine !== generation) {
          job.ui.state("error", "stopped", "Upload stopped.", "danger");
          return undefined;
        }
        queued -= 1;
        sending += 1;
        var sent = resumable && job.file.size > RESUMABLE_ABOVE ?
          sendResumable(resumable, job.file, job.ui, function () { return mine === generation; }) :
          send(url, job.file, job.ui);
        return sent.then(function (answer) {
          sending -= 1;
          if (answer) { ok += 1; last = answer; } else { failed += 1; }
        });
      });
    }, Promise.resolve()).then(function () {
      if (mine !== generation) { return; }
      setProps(zone.getAttribute("data-done-store") || "coll-uploaded",
        { data: { ok: ok, failed: failed, t: Date.now(), last: last } });
    });
  }

  function zoneOf(node) {
    return node && node.closest ? node.closest(".incdb-dropzone") : null;
  }

  // The file input is made here, not by Dash (which has no file input component): a click on the
  // "choose files" button opens the browser's file chooser.
  document.addEventListener("click", function (event) {
    var button = event.target && event.target.closest ?
      event.target.closest("#coll-choose, .incdb-upload-choose") : null;
    if (!button || button.disabled) { return; }
    var zone = zoneOf(button) || document.querySelector(".incdb-dropzone");
    var input = document.createElement("input");
    input.type = "file";
    input.multiple = !(zone && zone.getAttribute("data-single") === "1");
    // The picker takes file endings only: names without one (melodic_mix) are chosen with "All files".
    input.accept = pickerEndings((zone && zone.getAttribute("data-accept")) || "");
    input.style.display = "none";
    input.addEventListener("change", function () {
      uploadAll(zone, Array.prototype.slice.call(input.files || []));
      input.remove();
    });
    document.body.appendChild(input);
    input.click();
  });

  document.addEventListener("dragover", function (event) {
    var zone = zoneOf(event.target);
    if (!zone) { return; }
    event.preventDefault();
    zone.classList.add("incdb-dropzone-over");
  });
  document.addEventListener("dragleave", function (event) {
    var zone = zoneOf(event.target);
    if (zone) { zone.classList.remove("incdb-dropzone-over"); }
  });
  document.addEventListener("drop", function (event) {
    var zone = zoneOf(event.target);
    if (!zone) { return; }
    event.preventDefault();
    zone.classList.remove("incdb-dropzone-over");
    var button = zone.querySelector("#coll-choose, .incdb-upload-choose");
    if (button && button.disabled) { return; }
    uploadAll(zone, Array.prototype.slice.call((event.dataTransfer && event.dataTransfer.files) || []));
  });

  window.addEventListener("beforeunload", function (event) {
    if (!busy()) { return undefined; }
    event.preventDefault();
    event.returnValue = "";
    return "";
  });

  // Links inside the app change the page without unloading it: ask here too (capture phase, before Dash's own
  // click handling), and stop the uploads when the curator leaves anyway.
  document.addEventListener("click", function (event) {
    if (!busy()) { return; }
    var link = event.target && event.target.closest ? event.target.closest("a[href]") : null;
    if (!link || link.target === "_blank" || link.hasAttribute("download")) { return; }
    if (!window.confirm("Files are still uploading. Leave this page and stop the uploads?")) {
      event.preventDefault();
      event.stopPropagation();
      return;
    }
    queued = 0;
    generation += 1;
    inflight.slice().forEach(function (xhr) { xhr.abort(); });
  }, true);
}());
