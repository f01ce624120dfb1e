package org.apache.flink.metrics.prometheus;

import java.net.URL;
import java.util.Properties;
import lakehouse.fastpath.Secure;
import org.apache.flink.metrics.reporter.MetricReporter;
import org.apache.flink.metrics.reporter.MetricReporterFactory;

/**
 * {@link LakehousePushGatewayReporter} from {@code metrics.reporter.<name>.*}: hostUrl, jobName,
 * deleteOnShutdown, user, passwordFile, caFile (paths, never a password).
 */
public class LakehousePushGatewayReporterFactory implements MetricReporterFactory {
  @Override
  public MetricReporter createMetricReporter(Properties p) {
    try {
      return new LakehousePushGatewayReporter(
          new URL(p.getProperty("hostUrl")),
          p.getProperty("jobName"),
          Boolean.parseBoolean(p.getProperty("deleteOnShutdown", "true")),
          Secure.trusting(p.getProperty("caFile")),
          p.getProperty("user"),
          Secure.secret("LAKEHOUSE_PROMETHEUS_PUSHER_PASSWORD", p.getProperty("passwordFile")));
    } catch (Exception e) {
      throw new IllegalStateException("cannot set up the pushgateway reporter: " + e, e);
    }
  }
}
