// The content editor: a moment after typing stops, sends the draft to be checked and previewed;
// lists the problems beside the editor with buttons that jump to their line; shows where the
// cursor is. Without this script the editor still works: Save checks the file on the server.
(function () {
  "use strict";
  var form = document.getElementById("editor-form");
  var text = document.getElementById("text");
  if (!form || !text) {
    return;
  }
  var DELAY = 800;
  var status = document.getElementById("check-status");
  var list = document.getElementById("problem-list");
  var frame = document.getElementById("preview-frame");
  var target = document.getElementById("preview-target");
  var cursor = document.getElementById("cursor-position");
  var timer = null;
  var checking = false;
  var again = false;
  var draft = frame ? frame.getAttribute("data-draft") : "";

  var draftForm = function () {
    var data = new FormData();
    ["csrf_token", "path", "based_on"].forEach(function (name) {
      data.append(name, form.elements[name].value);
    });
    data.append("text", text.value);
    return data;
  };

  var post = function (url) {
    return fetch(url, {method: "POST", body: draftForm(), credentials: "same-origin",
                       headers: {"Accept": "application/json"}});
  };

  var lineStart = function (line) {
    var lines = text.value.split("\n");
    var offset = 0;
    for (var i = 0; i < line - 1 && i < lines.length; i += 1) {
      offset += lines[i].length + 1;
    }
    return {start: offset, end: offset + (lines[line - 1] || "").length};
  };

  var goToLine = function (line) {
    var range = lineStart(line);
    text.focus();
    text.setSelectionRange(range.start, range.end);
    // Scroll the line into view: about one line height per line above it.
    var height = parseFloat(getComputedStyle(text).lineHeight) || 20;
    text.scrollTop = Math.max(0, (line - 5) * height);
    showCursor();
  };

  var addText = function (parent, tag, className, value) {
    var node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    node.textContent = value;
    parent.appendChild(node);
    return node;
  };

  var problemItem = function (problem) {
    var item = document.createElement("li");
    item.className = "problem problem-" + problem.severity;
    var where = addText(item, "span", "problem-where", "");
    if (problem.here && problem.line) {
      var button = addText(where, "button", "link-button", "Line " + problem.line);
      button.type = "button";
      button.setAttribute("data-line", String(problem.line));
    } else if (problem.here) {
      where.textContent = "This file";
    } else {
      addText(where, "code", "", problem.file);
      if (problem.line) {
        where.appendChild(document.createTextNode(" line " + problem.line));
      }
    }
    item.appendChild(document.createTextNode(" "));
    addText(item, "span", "problem-severity", problem.severity + ":");
    item.appendChild(document.createTextNode(" " + problem.message + "."));
    if (problem.fix) {
      item.appendChild(document.createTextNode(" "));
      addText(item, "span", "problem-fix", "Fix: " + problem.fix);
    }
    return item;
  };

  var showProblems = function (answer) {
    list.textContent = "";
    (answer.problems || []).forEach(function (problem) {
      list.appendChild(problemItem(problem));
    });
    var errors = answer.errors || 0;
    var warnings = answer.warnings || 0;
    if (!errors && !warnings) {
      status.textContent = "No problems found. You can save.";
    } else if (!errors) {
      status.textContent = "No errors, " + warnings + (warnings === 1 ? " warning" : " warnings") +
        ". You can save; the warnings are worth a look.";
    } else {
      status.textContent = errors + (errors === 1 ? " error" : " errors") + " and " + warnings +
        (warnings === 1 ? " warning" : " warnings") +
        (errors ? ". Saving is refused until the errors are fixed." : ".");
    }
  };

  var check = function () {
    if (checking) {
      again = true;
      return;
    }
    checking = true;
    status.textContent = "Checking…";
    post(form.getAttribute("data-check-url")).then(function (response) {
      if (response.status === 413) {
        throw new Error("This file is too big to send from the browser.");
      }
      if (!response.ok && response.status !== 422) {
        throw new Error("");
      }
      return response.json();
    }).then(showProblems).catch(function (error) {
      status.textContent = (error && error.message && error.message.indexOf("too big") !== -1)
        ? error.message
        : "The check did not answer. Reload the page if this goes on; Save still checks the file.";
    }).then(function () {
      checking = false;
      if (again) {
        again = false;
        check();
      }
    });
  };

  var previewSrc = function () {
    if (!draft || !target || !target.value) {
      return "";
    }
    var parts = target.value.split("|");
    var query = new URLSearchParams({sequence: parts[0], step: parts[1], locale: parts[2] || "en"});
    return "/admin/content/preview/" + encodeURIComponent(draft) + "?" + query.toString();
  };

  var showPreview = function () {
    var src = previewSrc();
    if (frame && src) {
      frame.src = src;
    }
  };

  var preview = function () {
    post(form.getAttribute("data-preview-url")).then(function (response) {
      return response.ok ? response.json() : null;
    }).then(function (answer) {
      if (answer && answer.id) {
        draft = answer.id;
        frame.setAttribute("data-draft", draft);
        showPreview();
      }
    }).catch(function () { /* The preview keeps the last good draft. */ });
  };

  var showCursor = function () {
    if (!cursor) {
      return;
    }
    var before = text.value.slice(0, text.selectionStart).split("\n");
    cursor.textContent = "Line " + before.length + ", column " +
      (before[before.length - 1].length + 1);
  };

  if (!text.readOnly) {
    text.addEventListener("input", function () {
      window.clearTimeout(timer);
      timer = window.setTimeout(function () {
        check();
        preview();
      }, DELAY);
    });
  }
  ["keyup", "click", "focus"].forEach(function (name) {
    text.addEventListener(name, showCursor);
  });
  list.addEventListener("click", function (event) {
    var line = event.target && event.target.getAttribute && event.target.getAttribute("data-line");
    if (line) {
      goToLine(parseInt(line, 10));
    }
  });
  if (target) {
    target.addEventListener("change", showPreview);
    var show = document.getElementById("preview-show");
    if (show) {
      show.hidden = true;  // The choice applies at once; the button is for pages without script.
    }
  }
}());
