"""Pure judging of Prometheus samples against a ModelDeployment's bounds.

Nothing here does I/O: the metric providers turn query results into
:class:`~modelcanary.analysis.samples.Sample` values, and this package decides
what they mean (pass, fail, no data, error) and what an evaluation as a whole
means under the noData and outage policies.
"""
