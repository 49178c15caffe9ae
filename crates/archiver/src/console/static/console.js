// The console's one script: a share file chosen on the unseal page fills the share field
// (read in the browser and sent with the form, like a pasted one); text selected in a record
// on the redaction screen fills the span's offsets, counted in Unicode scalar values as the
// archive counts them.
document.addEventListener("DOMContentLoaded", function () {
  var text = document.getElementById("record-text");
  if (text) {
    document.addEventListener("selectionchange", function () {
      var sel = document.getSelection();
      if (!sel || sel.rangeCount === 0 || sel.isCollapsed) return;
      var range = sel.getRangeAt(0);
      if (!text.contains(range.startContainer) || !text.contains(range.endContainer)) return;
      var before = document.createRange();
      before.selectNodeContents(text);
      before.setEnd(range.startContainer, range.startOffset);
      var start = Array.from(before.toString()).length;
      var end = start + Array.from(range.toString()).length;
      document.getElementById(text.dataset.start).value = start;
      document.getElementById(text.dataset.end).value = end;
    });
  }
  document.querySelectorAll("input[type=file][data-fills]").forEach(function (input) {
    input.addEventListener("change", function () {
      var target = document.getElementById(input.dataset.fills);
      var file = input.files && input.files[0];
      if (!target || !file || file.size > 65536) return;
      file.text().then(function (text) { target.value = text.trim(); });
    });
  });
});
