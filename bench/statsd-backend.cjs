// A statsd backend that appends each flush as one JSON line, so the benchmark can read what statsd computed.
const fs = require("node:fs");

exports.init = (_startup, config, emitter) => {
  const file = config.jsonlFile;
  emitter.on("flush", (timestamp, metrics) => {
    const sets = {};
    for (const k of Object.keys(metrics.sets)) sets[k] = metrics.sets[k].size();
    fs.appendFileSync(
      file,
      `${JSON.stringify({ timestamp, counters: metrics.counters, timer_data: metrics.timer_data, sets })}\n`,
    );
  });
  return true;
};
