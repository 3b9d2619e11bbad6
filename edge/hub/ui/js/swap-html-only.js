// The console's pages are boosted by htmx: a link's answer is swapped into the page. htmx swaps
// any 2xx answer as markup, whatever its type: a link that reached the face API's JSON (which
// repeated a crafted path) had it swapped in as HTML, under the page's CSRF header, and made an
// admin account in the clicking admin's name. Only HTML is swapped; anything else is opened as
// itself, a plain navigation the browser shows as the data it is.
document.addEventListener("htmx:beforeSwap", function (event) {
  var type = event.detail.xhr.getResponseHeader("Content-Type") || "";
  if (type.toLowerCase().indexOf("text/html") !== 0) {
    event.detail.shouldSwap = false;
    if (event.detail.boosted && event.detail.requestConfig && event.detail.requestConfig.verb === "get") {
      window.location.assign(event.detail.pathInfo.requestPath);
    }
  }
});
