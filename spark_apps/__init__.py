"""PySpark apps, each runnable alone with spark-submit; pure transforms apart from I/O.

Every app builds its session with ``lakehouse.delta.session.build_spark_session``.
"""
