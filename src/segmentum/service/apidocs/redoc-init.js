// ReDoc on the schema served beside it, with the fonts of the system (no web fonts fetched).
(function () {
  var el = document.getElementById("redoc");
  Redoc.init(el.getAttribute("data-openapi"), { hideDownloadButton: false }, el);
})();
