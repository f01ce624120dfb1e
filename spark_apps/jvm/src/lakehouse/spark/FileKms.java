package lakehouse.spark;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Base64;
import java.util.regex.Pattern;
import org.apache.parquet.crypto.KeyAccessDeniedException;
import org.apache.parquet.crypto.keytools.LocalWrapKmsClient;

/**
 * The KMS of Parquet modular encryption for the local stack: master keys are files in the secrets
 * directory ({@code <secrets>/parquet-keys/<id>.key}, base64 of 32 random bytes, mode 0600).
 *
 * <p>Parquet's key tools make a random AES-256 data key per file and column, wrap it with a key
 * encryption key, and wrap that with the master key named by its id, here, in this process (AES-GCM,
 * {@link LocalWrapKmsClient}); the wrapped keys travel in the file's footer. A deployment replaces
 * this class with a client of its KMS (AWS KMS, Vault transit) that wraps remotely: the files, the
 * factory ({@link PiiCryptoFactory}) and the rotation procedure stay the same.
 */
public final class FileKms extends LocalWrapKmsClient {
  /** Hadoop configuration key: the directory holding the master keys. */
  public static final String KEY_DIR = "lakehouse.parquet.key.dir";

  private static final Pattern KEY_ID = Pattern.compile("[A-Za-z0-9_-]{1,64}");
  private Path dir;

  @Override
  protected void initializeInternal() throws KeyAccessDeniedException {
    String configured = hadoopConfiguration.get(KEY_DIR);
    if (configured == null || configured.isEmpty()) {
      throw new KeyAccessDeniedException(KEY_DIR + " is not set: no directory of Parquet master keys");
    }
    dir = Path.of(configured);
  }

  @Override
  protected byte[] getMasterKeyFromServer(String keyId) throws KeyAccessDeniedException {
    return read(dir, keyId);
  }

  /** Master key KEYID from DIR: 32 bytes, or an error naming what is wrong (never the key). */
  static byte[] read(Path dir, String keyId) {
    if (keyId == null || !KEY_ID.matcher(keyId).matches()) {
      throw new KeyAccessDeniedException("not a master key id: " + keyId);
    }
    Path file = dir.resolve(keyId + ".key");
    byte[] key;
    try {
      key = Base64.getDecoder().decode(new String(Files.readAllBytes(file), StandardCharsets.US_ASCII).strip());
    } catch (java.nio.file.NoSuchFileException e) {
      throw new KeyAccessDeniedException(
          "Parquet master key " + keyId + " is not in " + dir + " (retired by a key rotation before every file "
              + "encrypted with it was rewritten? see docs/security.md, rotating the encryption key)");
    } catch (IOException | IllegalArgumentException e) {
      throw new KeyAccessDeniedException("cannot read Parquet master key " + keyId + " from " + file + ": " + e);
    }
    if (key.length != 32) {
      throw new KeyAccessDeniedException("Parquet master key " + keyId + " is " + key.length + " bytes, not 32");
    }
    return key;
  }

  /** The id of the master key new files are encrypted with: the file {@code current} in DIR. */
  static String current(Path dir) {
    try {
      String id = new String(Files.readAllBytes(dir.resolve("current")), StandardCharsets.US_ASCII).strip();
      read(dir, id); // it must exist and be a key
      return id;
    } catch (IOException e) {
      throw new KeyAccessDeniedException("no current Parquet master key in " + dir + " (run `lakehouse setup`): " + e);
    }
  }
}
