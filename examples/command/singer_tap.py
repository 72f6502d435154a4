"""A Singer tap in a few lines: `countries` records, a STATE every 25, resumable with --state.

Run by examples/command_python_to_file.yml (`source: name: command`). Any language works: print
RECORD / STATE / LOG lines (Singer's or Airbyte's shape) on stdout; read --state FILE on resume.
"""

import json
import sys

state = {}
if "--state" in sys.argv:
    with open(sys.argv[sys.argv.index("--state") + 1]) as f:
        state = json.load(f)

codes = ["AD", "AE", "AF", "AG", "AL", "AM", "AO", "AR", "AT", "AU", "AZ", "BA", "BD", "BE", "BF", "BG"] * 10
start = state.get("offset", 0)
print(json.dumps({"type": "SCHEMA", "stream": "countries", "schema": {"type": "object"}, "key_properties": ["id"]}))
for i in range(start, len(codes)):
    print(json.dumps({"type": "RECORD", "stream": "countries", "record": {"id": i, "code": codes[i]}}))
    if (i + 1) % 25 == 0:
        print(json.dumps({"type": "STATE", "value": {"offset": i + 1}}))
