package lakehouse.core;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import lakehouse.core.FraudRules.Pay;

/**
 * The card rules (card_testing, impossible_travel) over one card's held payments, engine-neutral:
 * the Spark operator ({@code lakehouse.spark.CardFraud}) and the fast path's Flink function both
 * call {@link #judge} and only adapt rows and timers.
 *
 * <p>Held: the card's payments with event time at or after the cut ({@code watermark - late
 * horizon - 10 min}, impossible_travel's look-back). A new payment is judged with what is held; a
 * held payment whose verdict it changes (an out-of-order arrival) is reported as changed. A payment
 * older than the cut is judged against what is held but not kept. A payment whose id is already
 * held is a copy and is ignored.
 */
public final class CardJudge {
  private CardJudge() {}

  /** What one call decided. */
  public static final class Outcome {
    /** The new payments judged (copies left out), in input order, each with its card bits. */
    public final List<Pay> judged = new ArrayList<>();
    /** Held payments whose card bits changed, in event-time order. */
    public final List<Pay> changed = new ArrayList<>();
    /** What to hold from now on (may be empty). */
    public PayState next;
  }

  /** Microsecond cut for WATERMARK_MS: payments at or after it are held. */
  public static long cutMicros(long watermarkMs, long lateHorizonMs) {
    return (watermarkMs - lateHorizonMs) * 1000L - FraudRules.TRAVEL_US;
  }

  public static Outcome judge(PayState st, List<Pay> arrivals, long cut) {
    Outcome out = new Outcome();
    Set<String> ids = new HashSet<>();
    for (Pay p : st.pays) ids.add(p.id);
    for (Pay p : arrivals) {
      if (!ids.add(p.id)) continue; // already judged: a copy the dedup horizon no longer covers
      p.stored = p.t >= cut;
      out.judged.add(p);
    }
    if (out.judged.isEmpty()) {
      out.next = st;
      return out;
    }
    List<Pay> held = new ArrayList<>(st.pays);
    boolean judgeOnly = false;
    for (Pay p : out.judged) {
      if (p.stored) held.add(p);
      else judgeOnly = true;
    }
    held.sort(null);
    int[] bits = FraudRules.cardBits(held);
    Set<Pay> fresh = new HashSet<>(out.judged);
    for (int k = 0; k < held.size(); k++) {
      Pay p = held.get(k);
      if (fresh.contains(p)) {
        p.bits = bits[k];
      } else if (p.bits != bits[k]) {
        p.bits = bits[k];
        out.changed.add(p);
      }
    }
    if (judgeOnly) { // older than the horizon: judged with what is held, without changing it
      List<Pay> all = new ArrayList<>(held);
      for (Pay p : out.judged) if (!p.stored) all.add(p);
      all.sort(null);
      int[] b = FraudRules.cardBits(all);
      for (int k = 0; k < all.size(); k++) if (!all.get(k).stored) all.get(k).bits = b[k];
    }
    out.next = retain(new PayState(held, 0), cut);
    return out;
  }

  /** The held payments at or after CUT. */
  public static PayState retain(PayState st, long cut) {
    List<Pay> keep = new ArrayList<>(st.pays.size());
    for (Pay p : st.pays) if (p.t >= cut) keep.add(p);
    return new PayState(keep, 0);
  }

  /** When the card may be forgotten: the watermark (ms) past which nothing held can matter. */
  public static long expiryMs(PayState st, long lateHorizonMs) {
    long newest = st.pays.get(st.pays.size() - 1).t;
    return Math.floorDiv(newest + FraudRules.TRAVEL_US, 1000L) + lateHorizonMs + 1;
  }
}
