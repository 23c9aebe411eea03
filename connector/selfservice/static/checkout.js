// The checkout's live price: while the buyer fills the form, the engine's preview of the order
// (POST /buy/quote, the form's own fields and CSRF token) is shown next to it. Without script
// the "See the price" step shows the same figures.
(function () {
  "use strict";
  var form = document.querySelector("form[data-quote-url]");
  var box = document.getElementById("live-price");
  if (!form || !box) {
    return;
  }
  var timer = null;
  var asked = 0;

  function show(answer) {
    if (!answer.ok) {
      box.hidden = true;
      return;
    }
    document.getElementById("live-subtotal").textContent = answer.subtotal;
    document.getElementById("live-tax").textContent = answer.tax;
    document.getElementById("live-total").textContent = answer.total;
    document.getElementById("live-recurring").textContent = answer.recurring;
    box.hidden = false;
  }

  function refresh() {
    var mine = ++asked;
    fetch(form.getAttribute("data-quote-url"), {
      method: "POST", body: new FormData(form), credentials: "same-origin",
      headers: {"Accept": "application/json"}
    }).then(function (response) {
      return response.ok || response.status === 422 ? response.json() : {ok: false};
    }).then(function (answer) {
      if (mine === asked) {
        show(answer);
      }
    }).catch(function () {
      box.hidden = true;
    });
  }

  function later() {
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, 300);
  }

  form.addEventListener("input", later);
  form.addEventListener("change", later);
  refresh();
}());
