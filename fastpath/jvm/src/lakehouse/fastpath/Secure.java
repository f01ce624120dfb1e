package lakehouse.fastpath;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocketFactory;
import javax.net.ssl.TrustManagerFactory;
import redis.clients.jedis.DefaultJedisClientConfig;
import redis.clients.jedis.HostAndPort;
import redis.clients.jedis.Jedis;

/**
 * How the fast path's processes reach secured services: secrets read from their files in the
 * secrets directory (never from arguments or job.json), and TLS that trusts the local CA only and
 * checks the server's name.
 */
public final class Secure {
  private Secure() {}

  /** A secret: the environment variable ENV when set (a secret manager's injection), else the file's text. */
  public static String secret(String env, String file) throws IOException {
    String value = System.getenv(env);
    if (value != null && !value.isEmpty()) return value;
    if (file == null || file.isEmpty()) throw new IllegalStateException(env + " is not set and no secret file is named");
    value = Files.readString(Path.of(file), StandardCharsets.UTF_8).strip();
    if (value.isEmpty()) throw new IllegalStateException("secret file " + file + " is empty");
    return value;
  }

  /** TLS trusting only the CA certificates in CA_FILE (PEM). */
  public static SSLSocketFactory trusting(String caFile) throws IOException, GeneralSecurityException {
    KeyStore trust = KeyStore.getInstance(KeyStore.getDefaultType());
    trust.load(null, null);
    try (InputStream in = Files.newInputStream(Path.of(caFile))) {
      int i = 0;
      for (Certificate c : CertificateFactory.getInstance("X.509").generateCertificates(in)) trust.setCertificateEntry("ca" + i++, c);
    }
    TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
    tmf.init(trust);
    SSLContext ctx = SSLContext.getInstance("TLS");
    ctx.init(null, tmf.getTrustManagers(), null);
    return ctx.getSocketFactory();
  }

  /** A Redis connection over TLS as USER, its password read from PASSWORD_FILE. */
  static Jedis redis(String host, int port, String user, String passwordFile, String caFile, int timeoutMs)
      throws IOException, GeneralSecurityException {
    SSLParameters params = new SSLParameters();
    params.setEndpointIdentificationAlgorithm("HTTPS"); // the certificate must name the host
    DefaultJedisClientConfig config =
        DefaultJedisClientConfig.builder()
            .user(user)
            .password(secret("LAKEHOUSE_REDIS_" + user.toUpperCase() + "_PASSWORD", passwordFile))
            .ssl(true)
            .sslSocketFactory(trusting(caFile))
            .sslParameters(params)
            .timeoutMillis(timeoutMs)
            .build();
    return new Jedis(new HostAndPort(host, port), config);
  }

  /** A Redis connection as described by a job's "redis" object (host, port, user, password_file, ca_file). */
  static Jedis redis(com.fasterxml.jackson.databind.JsonNode c, int timeoutMs) throws IOException, GeneralSecurityException {
    return redis(c.get("host").asText(), c.get("port").asInt(), c.get("user").asText(), c.get("password_file").asText(),
        c.get("ca_file").asText(), timeoutMs);
  }
}
