"""The help texts of the commands: examples, output columns and exit statuses."""

from __future__ import annotations

from typing import Final

from ._exit import EXIT_HELP

COLUMNS_HELP: Final = """\
output columns (one row per identifier; JSON Lines keys or CSV header):
  identifier   the identifier as read from the input
  ok           true if the wallet was read
  balance      a decimal string, exact (no float rounding)
  currency     e.g. KZT
  status       the wallet's status, e.g. active
  wallet_id    the wallet's UUID
  error        for a failed lookup: the error class, e.g. WalletNotFoundError
  error_code   the API's error code, e.g. 1004 (empty if none)
  http_status  the HTTP status of the failed reply (empty if none)
  message      the API's or the client's message
  CSV cells that start with = + - @ TAB CR or ' get a leading ' (a spreadsheet would run
  them as formulas; plain numbers are left as they are); JSON Lines are exact."""

TOP: Final = f"""\
examples:
  export FREEDOMPAY_AUTH_ID=123456 FREEDOMPAY_SECRET_KEY=...
  freedompay-async info user-42
  freedompay-async poll ids.txt --out balances.csv
  freedompay-async demo --wallets 1000
  freedompay-async COMMAND --help     (examples, columns and exit status of each command)

{EXIT_HELP}"""

INFO: Final = """\
examples:
  freedompay-async info user-42
  freedompay-async info user-42 --base-url https://api.example.test --timeout 5

output: the wallet's reply as indented JSON on stdout (balance as a decimal string); errors on
stderr in one line.

exit status:
  0    the wallet was read
  1    the lookup failed (e.g. WalletNotFoundError)
  2    usage error (bad option, missing credential, an identifier that cannot be valid)
  3    the API refused the credentials, or could not be reached
  130  interrupted (Ctrl-C)"""

POLL: Final = f"""\
examples:
  freedompay-async poll ids.txt --out balances.csv
  cut -d, -f1 customers.csv | freedompay-async poll - -c 128 --rate 500 --out b.jsonl
  freedompay-async poll ids.txt --out balances.csv --resume     (after a crash: the rest)
  freedompay-async poll ids.txt --out balances.csv --overwrite  (start again)
  freedompay-async poll --distributed redis://host:6379/0 ids.txt --out b.jsonl

input: one identifier per line; blank lines and surrounding spaces are ignored; a line that
is not UTF-8 is not sent (its row has error InvalidArgumentError and names the line).

output: --out FILE is never replaced: an existing non-empty file is refused unless --resume
(skip the identifiers already in it, append the rest) or --overwrite. A file that another
run is writing is refused (it is locked). Rows are flushed a few times a second; the file
only ever ends in a whole row.

{COLUMNS_HELP}

stopping: Ctrl-C, SIGTERM and SIGHUP stop the lookups, write every complete row, print the
summary and exit 130 / 143 / 129. The run stops by itself (exit 3) when the API refuses the
credentials or --max-errors lookups in a row cannot reach it; those rows are not written, so
the same command with --resume looks them up again.

{EXIT_HELP}"""

DEMO: Final = f"""\
examples:
  freedompay-async demo
  freedompay-async demo --wallets 100000 --missing 10 --out demo.csv

{COLUMNS_HELP}

{EXIT_HELP}"""

WORKER: Final = """\
examples:
  freedompay-async worker redis://host:6379/0
  freedompay-async worker redis://host:6379/0 -c 64 --shards 4 --name worker-a

output: none; the rows go to Redis for the producer (poll --distributed). Log on stderr.

exit status:
  0    stopped by SIGTERM or Ctrl-C after the shards in flight finished (or --grace)
  2    usage error (bad option, missing credential, redis extra not installed)
  3    Redis could not be reached
  130  stopped at once by a second SIGTERM or Ctrl-C (unfinished shards are requeued)"""
