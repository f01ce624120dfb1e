package lakehouse.spark;

import io.delta.storage.HadoopFileSystemLogStore;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileAlreadyExistsException;
import java.util.Iterator;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataOutputStream;
import org.apache.hadoop.fs.FSDataOutputStreamBuilder;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

/**
 * Delta's log store for s3a:// tables written by several drivers, on several machines.
 *
 * <p>Delta's commit protocol needs "create the file of version N unless it exists" to be atomic: two
 * writers racing for version N must see one succeed and the other fail, so the loser re-reads the log and
 * retries as N+1. Delta's own s3a store ({@code S3SingleDriverLogStore}) checks existence, then writes:
 * safe only with one driver per table. This store asks S3 itself: the commit file is a conditional put
 * ({@code If-None-Match: *}, through S3A's {@code fs.option.create.conditional.overwrite}); S3 (and
 * SeaweedFS, the stack's store) answers 412 when the key exists, which surfaces when the stream closes and
 * is turned here into the {@link FileAlreadyExistsException} Delta expects from a lost race.
 *
 * <p>Enabled by {@code spark.delta.logStore.s3a.impl} (lakehouse.delta.session), which every writer of a
 * table must set: a writer with Delta's default store would still check-then-write.
 */
public final class S3ConditionalPutLogStore extends HadoopFileSystemLogStore {
  /** S3A's builder option for a conditional create (Hadoop 3.4.2+). */
  static final String CONDITIONAL_CREATE = "fs.option.create.conditional.overwrite";

  public S3ConditionalPutLogStore(Configuration initHadoopConf) {
    super(initHadoopConf);
  }

  @Override
  public void write(Path path, Iterator<String> actions, Boolean overwrite, Configuration hadoopConf)
      throws IOException {
    FileSystem fs = path.getFileSystem(hadoopConf);
    if (overwrite) {
      try (FSDataOutputStream out = fs.create(path, true)) {
        writeActions(out, actions);
      }
      return;
    }
    FSDataOutputStreamBuilder<?, ?> create = fs.createFile(path);
    create.overwrite(false);
    create.must(CONDITIONAL_CREATE, true);
    try (FSDataOutputStream out = create.build()) {
      writeActions(out, actions);
    } catch (IOException e) {
      if (preconditionFailed(e)) {
        FileAlreadyExistsException lost = new FileAlreadyExistsException(path.toString());
        lost.initCause(e);
        throw lost;
      }
      throw e;
    }
  }

  private static void writeActions(FSDataOutputStream out, Iterator<String> actions) throws IOException {
    while (actions.hasNext()) {
      out.write((actions.next() + "\n").getBytes(StandardCharsets.UTF_8));
    }
  }

  /** Whether E (or a cause) is S3's 412 Precondition Failed: the key exists. */
  static boolean preconditionFailed(Throwable e) {
    for (Throwable t = e; t != null; t = t.getCause()) {
      if (t instanceof FileAlreadyExistsException
          || t instanceof org.apache.hadoop.fs.FileAlreadyExistsException) {
        return true;
      }
      String name = t.getClass().getSimpleName();
      String message = String.valueOf(t.getMessage());
      if (name.equals("RemoteFileChangedException")
          || message.contains("Status Code: 412")
          || message.contains("PreconditionFailed")
          || message.contains("pre-conditions you specified did not hold")) {
        return true;
      }
      if (t.getCause() == t) {
        break;
      }
    }
    return false;
  }

  /** S3 puts are atomic: a reader never sees half a commit file. */
  @Override
  public Boolean isPartialWriteVisible(Path path, Configuration hadoopConf) {
    return false;
  }
}
