// The call page's encoded transforms off the main thread (RTCRtpScriptTransform):
// frames are encrypted and decrypted here with the keys the page posts
// (static/sframe.js has the format).

import { FrameKeys } from "/static/sframe.js";

const keys = new FrameKeys();

onmessage = async ({ data: m }) => {
  if (m.op === "sender") await keys.setSender(m.kid, m.raw);
  else if (m.op === "receiver") await keys.setReceiver(m.peerId, m.kid, m.raw);
  else if (m.op === "forget") keys.forget(m.peerId);
};

onrtctransform = ({ transformer }) => {
  const { side, peerId } = transformer.options;
  transformer.readable.pipeThrough(keys.transform(side, peerId)).pipeTo(transformer.writable);
};
