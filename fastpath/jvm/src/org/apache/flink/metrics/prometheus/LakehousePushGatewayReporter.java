package org.apache.flink.metrics.prometheus;

import java.net.HttpURLConnection;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import javax.net.ssl.HttpsURLConnection;
import javax.net.ssl.SSLSocketFactory;
import io.prometheus.client.exporter.PushGateway;
import org.apache.flink.metrics.reporter.Scheduled;

/**
 * Flink's push-gateway reporter, but over TLS that trusts the local CA only and with the
 * pushgateway's Basic auth login (its password read from its file): Flink's own reporter can do
 * neither. In Flink's package for the reporter base class's registry.
 */
public class LakehousePushGatewayReporter extends AbstractPrometheusReporter implements Scheduled {
  private final PushGateway gateway;
  private final String job;
  private final boolean deleteOnShutdown;

  LakehousePushGatewayReporter(URL url, String job, boolean deleteOnShutdown, SSLSocketFactory tls, String user, String password) {
    this.job = job;
    this.deleteOnShutdown = deleteOnShutdown;
    String auth = "Basic " + Base64.getEncoder().encodeToString((user + ":" + password).getBytes(StandardCharsets.UTF_8));
    gateway = new PushGateway(url);
    gateway.setConnectionFactory(
        target -> {
          HttpURLConnection c = (HttpURLConnection) new URL(target).openConnection();
          if (c instanceof HttpsURLConnection https) https.setSSLSocketFactory(tls);
          c.setRequestProperty("Authorization", auth);
          return c;
        });
  }

  @Override
  public void report() {
    try {
      gateway.push(registry, job);
    } catch (Exception e) {
      log.warn("could not push the metrics to the pushgateway: {}", e.toString());
    }
  }

  @Override
  public void close() {
    if (deleteOnShutdown) {
      try {
        gateway.delete(job);
      } catch (Exception e) {
        log.warn("could not delete the metrics from the pushgateway: {}", e.toString());
      }
    }
    super.close();
  }
}
