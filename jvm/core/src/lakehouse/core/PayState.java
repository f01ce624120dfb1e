package lakehouse.core;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.sql.Timestamp;
import java.util.ArrayList;
import java.util.List;
import lakehouse.core.FraudRules.Pay;

/** A key's retained payments as one compact binary value (the state store holds bytes). */
public final class PayState {
  public static final int VERSION = 1;
  public final List<Pay> pays;
  public int dropped; // older payments no longer held (user state: amount_spike needs to know)

  public PayState(List<Pay> pays, int dropped) {
    this.pays = pays;
    this.dropped = dropped;
  }

  public static PayState empty() {
    return new PayState(new ArrayList<>(), 0);
  }

  private static void writeStr(DataOutputStream out, String s) throws IOException {
    out.writeBoolean(s != null);
    if (s != null) out.writeUTF(s);
  }

  private static String readStr(DataInputStream in) throws IOException {
    return in.readBoolean() ? in.readUTF() : null;
  }

  public byte[] encode() {
    ByteArrayOutputStream bytes = new ByteArrayOutputStream(64 + pays.size() * 96);
    try (DataOutputStream out = new DataOutputStream(bytes)) {
      out.writeInt(VERSION);
      out.writeInt(dropped);
      out.writeInt(pays.size());
      for (Pay p : pays) {
        out.writeUTF(p.id);
        out.writeLong(p.t);
        out.writeDouble(p.amount);
        writeStr(out, p.country);
        writeStr(out, p.user);
        writeStr(out, p.card);
        writeStr(out, p.merchant);
        out.writeInt(p.bits);
        out.writeInt(p.otherBits);
        out.writeBoolean(p.counted);
      }
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    return bytes.toByteArray();
  }

  public static PayState decode(byte[] data) {
    if (data == null) return empty();
    try (DataInputStream in = new DataInputStream(new ByteArrayInputStream(data))) {
      int version = in.readInt();
      if (version != VERSION) throw new IllegalStateException("fraud state version " + version + " unknown");
      int dropped = in.readInt();
      int n = in.readInt();
      List<Pay> pays = new ArrayList<>(n + 4);
      for (int i = 0; i < n; i++) {
        Pay p = new Pay();
        p.id = in.readUTF();
        p.t = in.readLong();
        p.amount = in.readDouble();
        p.country = readStr(in);
        p.user = readStr(in);
        p.card = readStr(in);
        p.merchant = readStr(in);
        p.bits = in.readInt();
        p.otherBits = in.readInt();
        p.counted = in.readBoolean();
        pays.add(p);
      }
      return new PayState(pays, dropped);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** Microseconds since the epoch of a Spark TIMESTAMP value. */
  public static long micros(Timestamp ts) {
    return Math.floorDiv(ts.getTime(), 1000L) * 1_000_000L + ts.getNanos() / 1000;
  }

  public static Timestamp timestamp(long micros) {
    Timestamp ts = new Timestamp(Math.floorDiv(micros, 1_000_000L) * 1000L);
    ts.setNanos((int) Math.floorMod(micros, 1_000_000L) * 1000);
    return ts;
  }
}
