/* segmentum-track.js: send what visitors do on your pages to POST /v1/events.
 *
 * <script src="https://segmentum.example.com/static/segmentum-track.js"
 *         data-key="sgm_..._..." data-customer="12350"></script>
 * <script>segmentum.track("add_to_cart", {product_id: "85123A", amount: 15.3});</script>
 *
 * data-key: a key with the track scope only (it can send events and read nothing); the site
 * must be listed in the server's track_origins setting. data-customer: the signed-in customer's
 * id (or call segmentum.identify(id) later). Visitors not signed in are tracked under a random
 * id kept in localStorage (anonymous_id). Events are sent in small batches with keepalive, so a
 * page that is closing still delivers them; each carries its own event_id, so a retry is
 * counted once.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  var key = script && script.getAttribute("data-key");
  var base = script ? new URL(script.src).origin : "";
  var customer = (script && script.getAttribute("data-customer")) || null;
  var queue = [];
  var timer = null;
  var FIELDS = ["product_id", "amount", "invoice_id", "channel", "device", "campaign_id"];

  function id() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return Date.now().toString(36) + Math.random().toString(36).slice(2);
  }

  function visitor() {
    try {
      var v = localStorage.getItem("segmentum_anonymous_id");
      if (!v) {
        v = id();
        localStorage.setItem("segmentum_anonymous_id", v);
      }
      return v;
    } catch (e) {
      return null;
    }
  }

  function flush() {
    timer = null;
    if (!queue.length || !key) return;
    var batch = queue.splice(0, 100);
    fetch(base + "/v1/events", {
      method: "POST",
      keepalive: true,
      headers: {"Content-Type": "application/json", "X-API-Key": key},
      body: JSON.stringify({events: batch})
    }).then(function (r) {
      if (r.status >= 500 || r.status === 429) queue = batch.concat(queue);
    }).catch(function () {
      queue = batch.concat(queue);  /* offline: sent again with the next event */
    });
  }

  function track(eventType, data) {
    data = data || {};
    var e = {
      event_id: id(),
      event_type: eventType,
      timestamp: new Date().toISOString(),
      anonymous_id: visitor(),
      properties: data.properties || {}
    };
    if (customer) e.customer_id = customer;
    FIELDS.forEach(function (f) {
      if (data[f] !== undefined && data[f] !== null) e[f] = data[f];
    });
    queue.push(e);
    if (!timer) timer = setTimeout(flush, 250);
  }

  window.segmentum = window.segmentum || {};
  window.segmentum.track = track;
  window.segmentum.identify = function (customerId) { customer = String(customerId); };
  window.segmentum.flush = flush;
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") flush();
  });
  if (script && script.getAttribute("data-page-view") !== "off") {
    track("page_view", {properties: {path: location.pathname}});
  }
})();
