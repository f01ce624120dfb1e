#!/usr/bin/env bash
# The image's entrypoint for Spark on Kubernetes (what Spark's own images' entrypoint.sh does, for a pyspark
# install): the driver pod runs `driver ARGS`, the executor pods `executor` with their settings in the
# environment; anything else (`lakehouse ...`, `dagster ...`) runs as given.
set -euo pipefail

case "${1:-}" in
  driver)
    shift
    # In the driver pod Spark runs in client mode: it is already "the cluster".
    exec "${SPARK_HOME}/bin/spark-submit" \
      --deploy-mode client \
      --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS}" \
      --conf "spark.executorEnv.SPARK_DRIVER_POD_IP=${SPARK_DRIVER_BIND_ADDRESS}" \
      "$@"
    ;;
  executor)
    shift
    exec "${JAVA_HOME}/bin/java" \
      "-Xms${SPARK_EXECUTOR_MEMORY}" "-Xmx${SPARK_EXECUTOR_MEMORY}" \
      -cp "${SPARK_HOME}/jars/*:${LAKEHOUSE_JVM_ROOT}/spark/*" \
      ${SPARK_JAVA_OPT_0:+"${SPARK_JAVA_OPT_0}"} \
      org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
      --driver-url "${SPARK_DRIVER_URL}" \
      --executor-id "${SPARK_EXECUTOR_ID}" \
      --cores "${SPARK_EXECUTOR_CORES}" \
      --app-id "${SPARK_APPLICATION_ID}" \
      --hostname "${SPARK_EXECUTOR_POD_IP}" \
      --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}" \
      --podName "${SPARK_EXECUTOR_POD_NAME}"
    ;;
  *)
    exec "$@"
    ;;
esac
