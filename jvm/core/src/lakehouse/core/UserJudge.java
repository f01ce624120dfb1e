package lakehouse.core;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import lakehouse.core.FraudRules.Pay;

/**
 * The user rules (velocity, amount_spike) over one user's held payments, and the final verdict,
 * engine-neutral: the Spark operator ({@code lakehouse.spark.UserFraud}) and the fast path's Flink
 * function both call {@link #judge}.
 *
 * <p>Input: the card stage's output for this user: new payments with their card bits, and card-bit
 * updates of held payments. Held: the user's payments at or after the same cut as the card state,
 * plus the 20 newest before it (amount_spike's history). A payment's verdict is its user bits or
 * its card bits; a held payment whose verdict changes is reported with its verdict before.
 */
public final class UserJudge {
  private UserJudge() {}

  private static final long MINUTE_US = 60_000_000L;

  /** One input: a new payment (PAY set) or a card-bit update of a held one (PAY null). */
  public static final class Arrival {
    public final String id;
    public final int cardBits;
    public final Pay pay;

    public Arrival(String id, int cardBits, Pay pay) {
      this.id = id;
      this.cardBits = cardBits;
      this.pay = pay;
    }
  }

  /** A held payment whose verdict (user bits | card bits) changed. */
  public static final class Change {
    public final Pay pay;
    public final int verdict;
    public final boolean wasFlagged;

    Change(Pay pay, int verdict, boolean wasFlagged) {
      this.pay = pay;
      this.verdict = verdict;
      this.wasFlagged = wasFlagged;
    }
  }

  /** What one call decided. */
  public static final class Outcome {
    /** New payments (copies left out), in input order; verdict = {@code bits | otherBits}. */
    public final List<Pay> judged = new ArrayList<>();
    /** Held payments whose verdict changed, in event-time order. */
    public final List<Change> changed = new ArrayList<>();
    /** What to hold from now on; null when nothing changed (state untouched). */
    public PayState next;
  }

  /**
   * Judges ARRIVALS against ST. WATERMARK_MS decides whether a new payment counted in its merchant
   * minute (its window had not ended); CUT (µs) which payments are held.
   */
  public static Outcome judge(PayState st, List<Arrival> arrivals, long watermarkMs, long cut) {
    Outcome out = new Outcome();
    Map<String, Pay> byId = new HashMap<>();
    Map<Pay, Integer> before = new IdentityHashMap<>();
    for (Pay p : st.pays) {
      byId.put(p.id, p);
      before.put(p, p.bits | p.otherBits);
    }
    Set<String> newIds = new HashSet<>();
    boolean changed = false;
    for (Arrival a : arrivals) {
      Pay held = byId.get(a.id);
      if (a.pay == null) { // a card-bit update of a held payment
        if (held != null && held.otherBits != a.cardBits) {
          held.otherBits = a.cardBits;
          changed = true;
        }
        continue;
      }
      if (held != null || !newIds.add(a.id)) continue; // a late copy of a payment already judged
      Pay p = a.pay;
      p.otherBits = a.cardBits;
      // On time for gold: its minute window had not ended by the watermark (the sink decides the same way).
      p.counted = Math.floorDiv(p.t, MINUTE_US) * MINUTE_US + MINUTE_US > watermarkMs * 1000L;
      p.stored = p.t >= cut;
      out.judged.add(p);
    }
    if (out.judged.isEmpty() && !changed) return out;

    List<Pay> held = new ArrayList<>(st.pays);
    boolean judgeOnly = false;
    for (Pay p : out.judged) {
      if (p.stored) held.add(p);
      else judgeOnly = true;
    }
    held.sort(null);
    int[] bits = FraudRules.userBits(held, st.dropped);
    Set<Pay> fresh = new HashSet<>(out.judged);
    for (int k = 0; k < held.size(); k++) {
      Pay p = held.get(k);
      if (bits[k] >= 0) p.bits = bits[k];
      if (fresh.contains(p)) continue;
      int was = before.get(p);
      int now = p.bits | p.otherBits;
      if (now != was) out.changed.add(new Change(p, now, was != 0));
    }
    if (judgeOnly) {
      List<Pay> all = new ArrayList<>(held);
      for (Pay p : out.judged) if (!p.stored) all.add(p);
      all.sort(null);
      int[] b = FraudRules.userBits(all, st.dropped);
      for (int k = 0; k < all.size(); k++) if (!all.get(k).stored) all.get(k).bits = Math.max(0, b[k]);
    }
    out.next = retain(new PayState(held, st.dropped), cut);
    return out;
  }

  /** The horizon, plus the 20 newest older payments: amount_spike's "20 previous". */
  public static PayState retain(PayState st, long cut) {
    int older = 0;
    while (older < st.pays.size() && st.pays.get(older).t < cut) older++;
    int drop = Math.max(0, older - FraudRules.SPIKE_HISTORY);
    return new PayState(new ArrayList<>(st.pays.subList(drop, st.pays.size())), st.dropped + drop);
  }

  /** When an idle user is forgotten: RETENTION_MS after the newest payment's event time. */
  public static long expiryMs(PayState st, long retentionMs) {
    return Math.floorDiv(st.pays.get(st.pays.size() - 1).t, 1000L) + retentionMs + 1;
  }
}
