// The conversation page (worker/review/templates/conversation.html). Everything here is an aid:
// without it a turn's link opens the recording at its time, and the missed-value form takes
// the words typed.
// - a turn's ▶ link seeks the page's player to the turn and plays it; the turn playing is marked;
// - selecting words in a person's turn fills that turn's "value the worker missed" form with
//   the words and their span (characters of the turn's text, tooltips left out).
(function () {
  "use strict";
  var player = document.getElementById("recording");

  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("a.seek") : null;
    if (!link || !player) return;
    var at = parseFloat(link.getAttribute("data-at"));
    if (isNaN(at)) return;
    event.preventDefault();
    player.currentTime = at;
    var playing = player.play();
    if (playing && playing.catch) playing.catch(function () {});
  });

  if (player) {
    var links = Array.prototype.slice.call(document.querySelectorAll("a.seek[data-at]"));
    player.addEventListener("timeupdate", function () {
      var now = player.currentTime, current = null;
      links.forEach(function (link) {
        if (parseFloat(link.getAttribute("data-at")) <= now + 0.05) current = link.closest("li");
      });
      links.forEach(function (link) {
        var item = link.closest("li");
        if (item) item.classList.toggle("playing", item === current);
      });
    });
  }

  // Characters of the turn's own text from its start to (node, offset), tooltips left out.
  function position(container, node, offset) {
    var range = document.createRange();
    range.setStart(container, 0);
    range.setEnd(node, offset);
    var part = range.cloneContents();
    Array.prototype.forEach.call(part.querySelectorAll(".tip"), function (tip) { tip.remove(); });
    return part.textContent.length;
  }

  function selected() {
    var selection = window.getSelection();
    if (!selection || selection.rangeCount === 0 || selection.isCollapsed) return null;
    var range = selection.getRangeAt(0);
    var start = range.startContainer.nodeType === 1 ? range.startContainer : range.startContainer.parentElement;
    var end = range.endContainer.nodeType === 1 ? range.endContainer : range.endContainer.parentElement;
    var turn = start && start.closest("p.text[data-turn]");
    if (!turn || turn !== (end && end.closest("p.text[data-turn]"))) return null;
    var a = position(turn, range.startContainer, range.startOffset);
    var b = position(turn, range.endContainer, range.endOffset);
    var whole = document.createRange();
    whole.selectNodeContents(turn);
    var copy = whole.cloneContents();
    Array.prototype.forEach.call(copy.querySelectorAll(".tip"), function (tip) { tip.remove(); });
    var text = copy.textContent;
    while (a < b && /\s/.test(text.charAt(a))) a++;
    while (b > a && /\s/.test(text.charAt(b - 1))) b--;
    if (a >= b) return null;
    return { turn: turn.getAttribute("data-turn"), start: a, end: b, words: text.slice(a, b) };
  }

  function fill() {
    var got = selected();
    if (!got) return;
    var details = document.getElementById("missed-form-" + got.turn);
    if (!details) return;
    var form = details.querySelector("form");
    form.elements.words.value = got.words;
    form.elements.span_start.value = String(got.start);
    form.elements.span_end.value = String(got.end);
    details.open = true;
    var hint = document.getElementById("missed-hint-" + got.turn);
    if (hint) hint.textContent = "Selected “" + got.words + "” (characters " + got.start + " to " + got.end + ").";
  }

  document.addEventListener("mouseup", function (event) {
    if (event.target.closest && event.target.closest("p.text[data-turn]")) fill();
  });
  document.addEventListener("keyup", function (event) {
    if (event.shiftKey) fill();  // a selection made with the keyboard (caret browsing)
  });

  // Typed words: the server finds them in the turn.
  document.addEventListener("input", function (event) {
    var field = event.target;
    if (field.name === "words" && field.form && field.form.elements.span_start) {
      field.form.elements.span_start.value = "";
      field.form.elements.span_end.value = "";
    }
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches("details.missed-form form")) return;
    var hint = form.querySelector(".hint");
    if (event.detail.successful) {
      ["words", "field", "value", "span_start", "span_end"].forEach(function (name) { form.elements[name].value = ""; });
      if (hint) hint.textContent = "Saved. Select or type more words to label another value.";
    } else if (hint) {
      var reason = event.detail.xhr ? event.detail.xhr.responseText : "";
      try { reason = JSON.parse(reason).detail || reason; } catch (e) { /* not JSON: the text as it is */ }
      hint.textContent = "Not saved: " + String(reason).slice(0, 200);
    }
  });
})();
