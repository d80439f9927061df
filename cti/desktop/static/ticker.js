// A timer that background tabs do not throttle: the MQTT keep-alive runs on it.
let timer = null;
onmessage = (event) => {
  if (timer !== null) clearInterval(timer);
  timer = null;
  if (event.data && event.data.every) timer = setInterval(() => postMessage("tick"), event.data.every);
};
