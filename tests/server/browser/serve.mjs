// Starts `herd serve` for the browser tests and resolves to its base URL
// once it prints "listening on …" (port 0: the kernel picks a free one).
import { spawn } from "node:child_process";

export async function serve(herd, args) {
  const server = spawn(herd, ["--threads", "2", "serve", "--port", "0", ...args], { stdio: ["ignore", "ignore", "pipe"] });
  const base = await new Promise((resolve, reject) => {
    let err = "";
    let timer;
    server.stderr.on("data", (d) => {
      err += d;
      const m = err.match(/listening on (http:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    server.on("exit", (code) => reject(new Error(`herd serve exited (${code}): ${err}`)));
    timer = setTimeout(() => reject(new Error("herd serve did not start")), 60000);
  });
  return { server, base };
}
