// A job's page follows it: its status is read again every two seconds, and the page is
// drawn again once the job has ended (to show its result).
document.addEventListener("DOMContentLoaded", function () {
  var box = document.querySelector("[data-job-status-url]");
  if (!box) { return; }
  var url = box.getAttribute("data-job-status-url");
  function field(name) { return document.querySelector("[data-job-field='" + name + "']"); }
  function poll() {
    fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (job) {
        if (!job) { window.setTimeout(poll, 5000); return; }
        if (!job.active) { window.location.reload(); return; }
        if (job.done !== null && field("done")) { field("done").textContent = job.done.toLocaleString(document.documentElement.lang); }
        if (job.total !== null && field("total")) { field("total").textContent = job.total.toLocaleString(document.documentElement.lang); }
        if (job.percent !== null && field("percent")) { field("percent").value = job.percent; }
        window.setTimeout(poll, 2000);
      })
      .catch(function () { window.setTimeout(poll, 5000); });
  }
  window.setTimeout(poll, 2000);
});
