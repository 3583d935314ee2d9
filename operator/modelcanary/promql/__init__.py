"""PromQL as text: one lexer, the query templates built on it, and the batching rewrite.

A user's query template is read by three parts of the operator: the API models'
admission checks (is every placeholder known, and inside a string?), the analysis
core (render it for a revision, escaping each value for the string around it), and
the metrics batcher (is its shape one that can be asked for many revisions at
once?). All three must agree on where a string starts and ends. If they did not,
a value escaped for a string could land in code, or a rewrite could edit text that
the renderer took for a string. So they share one lexer, :mod:`.lexer`, and
nothing here lexes PromQL a second way.

Pure and standard library only, and the lowest layer of the package: the API
models import it, so it imports nothing of the operator and does no I/O.
"""
