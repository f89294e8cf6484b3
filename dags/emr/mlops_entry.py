"""The EMR Serverless entry point of the DAGs' `emr-serverless` engines.

EMR Serverless runs a Python file from S3 with arguments; this one hands them to the
`mlops` command, so a job on EMR is `mlops score ... --engine spark` (the inference DAG)
or `mlops train ... --register` (the training DAG): the same code and checks (manifest,
data-only loading, columns, atomic output, sealed test rows) as on a laptop. The packed
environment that brings `pipeline` along is named in the job's Spark parameters
(docs/orchestration.md, "Spark on EMR Serverless").
"""

from pipeline.cli.app import main

if __name__ == "__main__":
    main()
