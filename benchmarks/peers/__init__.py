"""One module per peer SDK, each plugged into the harness through the same small interface:

    NAME            the subject's name (`bench.py --peers --subjects NAME`)
    LABEL           the name printed in the tables
    PACKAGE         what must be importable; without it the subject is skipped
    DIST            the distribution whose version is printed
    DISABLED_LABEL  the label of its switched-off subject `NAME-disabled`, or None if it has no switch
    kit(enabled)    the `harness.Kit` in its local configuration, or switched off; it imports the SDK
                    (logfire's is `kit()`: it has no switch)
    instrument_openai(client)  optional: instruments one `openai.OpenAI` client in its local
                    configuration, returning (its configuration, a function counting what it
                    recorded, its flush); the peer is then a subject of `bench.py --client`

A module imports nothing but the standard library and the harness at the top: the SDK is imported
in `kit()`, inside the subject's own process, where its import time and memory are measured.
The sandbox every peer runs in (environment, dead loopback port) is `worker.subject_env`.
"""

from . import langfuse, logfire, mlflow, opik, weave

# In the order of the tables.
ALL = [logfire, langfuse, weave, mlflow, opik]
