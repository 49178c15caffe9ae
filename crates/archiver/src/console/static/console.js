// The only script of the console: a share file chosen on the unseal page fills the share
// field (the share is read in the browser and sent with the form, like a pasted one).
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("input[type=file][data-fills]").forEach(function (input) {
    input.addEventListener("change", function () {
      var target = document.getElementById(input.dataset.fills);
      var file = input.files && input.files[0];
      if (!target || !file || file.size > 65536) return;
      file.text().then(function (text) { target.value = text.trim(); });
    });
  });
});
