// The privacy center's only script (served from its own origin; the CSP allows nothing else).
// Links put their token in the address's fragment (#token=...), which browsers never send to a
// server, so it stays out of access logs and Referer headers. This copies it into the form that
// POSTs it, and keeps it on the language links.
(function () {
  'use strict';
  var match = /(?:^#|&)token=([^&]+)/.exec(window.location.hash);
  var token = match ? decodeURIComponent(match[1]) : '';
  var inputs = document.querySelectorAll('input[data-from-fragment="token"]');
  for (var i = 0; i < inputs.length; i++) inputs[i].value = token;
  // Says that this script ran: a form that arrives without a token then had a link without one
  // (cut short), not a browser without JavaScript.
  var ran = document.querySelectorAll('input[data-script-ran]');
  for (var k = 0; k < ran.length; k++) ran[k].value = '1';
  if (token) {
    var links = document.querySelectorAll('a.lang-link');
    for (var j = 0; j < links.length; j++) links[j].setAttribute('href', links[j].getAttribute('href') + window.location.hash);
    // The preference page's opener: nothing to click, the link was the click.
    var auto = document.querySelector('form[data-autosubmit="true"]');
    if (auto) auto.submit();
  }
})();
