"""A real SMTP server for the mail tests: aiosmtpd, saving each message it accepts as a
file in a directory. Usage: sink.py PORT DIRECTORY. Prints "ready" once it listens."""

import pathlib
import sys
import time

from aiosmtpd.controller import Controller


class Save:
    def __init__(self, directory):
        self.directory = pathlib.Path(directory)

    async def handle_DATA(self, server, session, envelope):
        name = self.directory / f"{time.time_ns()}.eml"
        name.write_bytes(envelope.original_content or envelope.content)
        return "250 Message accepted"


controller = Controller(Save(sys.argv[2]), hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
print("ready", flush=True)
try:
    while True:
        time.sleep(3600)
finally:
    controller.stop()
