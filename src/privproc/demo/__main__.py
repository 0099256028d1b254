"""``make demo``: an OHTTP round trip through a local relay and gateway to an echo origin.

It starts the three services on loopback, sends one request through them and prints what
each hop saw, then stops them.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from privproc.client.ohttp import OHTTPClient
from privproc.wire import ohttp

from .supervisor import Supervisor, free_port


def main() -> int:
    host = "127.0.0.1"
    ports = {name: free_port(host) for name in ("origin", "gateway", "relay")}
    urls = {name: f"http://{host}:{port}" for name, port in ports.items()}
    message = "Dinner at 8? Bring the board games."
    with tempfile.TemporaryDirectory(prefix="privproc-demo-") as tmp, Supervisor(
        Path(tmp) / "logs"
    ) as sup:
        print("1. starting services on loopback")
        sup.start("origin", ["echo", "--listen", f"{host}:{ports['origin']}"], urls["origin"])
        print(f"   origin  (echo)   {urls['origin']}")
        sup.start("gateway", ["gateway", "--listen", f"{host}:{ports['gateway']}",
                              "--upstream", urls["origin"], "--state", f"{tmp}/gateway"],
                  urls["gateway"])
        print(f"   gateway          {urls['gateway']}  (keys in {tmp}/gateway, mode 0600)")
        sup.start("relay", ["relay", "--listen", f"{host}:{ports['relay']}",
                            "--gateway", urls["gateway"] + "/gateway"], urls["relay"])
        print(f"   relay            {urls['relay']}")

        client = OHTTPClient(urls["relay"] + "/", authority="assistant.example")
        config = client.key_config()
        print("2. client fetched the gateway key configuration through the relay")
        print(f"   key_id={config.key_id} kem=0x{config.kem_id:04x} "
              f"suites={[(s.kdf_id, s.aead_id) for s in config.symmetric]}")
        print("3. client seals a Binary HTTP request with HPKE and posts it to the relay")
        response = client.request(
            "POST", "/v1/echo", headers=[(b"content-type", b"text/plain")],
            content=message.encode(),
        )
        print(f"4. client opened the encapsulated response: status {response.status}")
        seen = json.loads(response.content)
        print("5. what the origin saw (it never sees the client):")
        print(f"   method={seen['method']} path={seen['path']} peer={seen['client']}")
        print(f"   headers={[name for name, _ in seen['headers']]}")
        print(f"   body={seen['body']!r}")
        relay_log = sup.services["relay"].log_text()
        gateway_log = sup.services["gateway"].log_text()
        print("6. what the relay logged (sizes only; it never holds a key):")
        for line in relay_log.splitlines():
            if "forwarded" in line:
                print("   " + line.split(" INFO ", 1)[-1])
        print("7. what the gateway logged (content-free):")
        for line in gateway_log.splitlines():
            if " ok:" in line or "keys loaded" in line:
                print("   " + line.split(" INFO ", 1)[-1])
        leaked = [n for n, log in (("relay", relay_log), ("gateway", gateway_log))
                  if message in log]
        if seen["body"] != message or leaked:
            print(f"demo FAILED: body mismatch or plaintext in logs of {leaked}", file=sys.stderr)
            return 1
        print(f"8. media types: {ohttp.MEDIA_TYPE_REQUEST} -> {ohttp.MEDIA_TYPE_RESPONSE}; "
              "stopping services")
    print("demo OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
