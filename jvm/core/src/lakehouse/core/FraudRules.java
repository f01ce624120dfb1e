package lakehouse.core;

import java.math.BigDecimal;
import java.math.RoundingMode;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The four fraud rules of contracts §3, evaluated over one key's payments (pure: no engine). The
 * Spark operators (refine) and the fast path (Flink) both call it.
 *
 * <p>The definitions are those of {@code lakehouse/fraud_reference.py} (the tests compare both):
 * payments are ordered by (event time in microseconds, event_id); card_testing and
 * impossible_travel look at the same card, velocity and amount_spike at the same user.
 * Each evaluation is O(n log n) in the key's retained payments.
 */
public final class FraudRules {
  public static final int CARD_TESTING = 1;
  public static final int VELOCITY = 2;
  public static final int AMOUNT_SPIKE = 4;
  public static final int IMPOSSIBLE_TRAVEL = 8;
  public static final int CARD_RULES = CARD_TESTING | IMPOSSIBLE_TRAVEL;
  public static final int USER_RULES = VELOCITY | AMOUNT_SPIKE;

  static final String[] NAMES = {"card_testing", "velocity", "amount_spike", "impossible_travel"};
  static final double[] WEIGHTS = {0.6, 0.5, 0.5, 0.7};

  static final double SMALL_AMOUNT = 2.00;
  static final int CARD_TESTING_MIN = 5;
  static final int VELOCITY_MIN = 10;
  public static final int SPIKE_HISTORY = 20;
  static final int SPIKE_MIN_HISTORY = 5;
  static final double SPIKE_FACTOR = 10.0;
  public static final long WINDOW_US = 60_000_000L;
  public static final long TRAVEL_US = 600_000_000L;

  private FraudRules() {}

  /** One payment as the rules see it; {@code bits} is the last verdict of the rules this key owns. */
  public static final class Pay implements Comparable<Pay> {
    public String id;
    public long t; // event time, microseconds since the epoch
    public double amount;
    public String country;
    public String user;
    public String card;
    public String merchant;
    public int bits; // verdict of this key's rules
    public int otherBits; // verdict of the other key's rules (user state only: the card rules)
    public boolean counted; // in a merchant minute (on time); user state only
    public boolean stored = true; // false: judged but not kept (older than the state horizon)

    @Override
    public int compareTo(Pay o) {
      int c = Long.compare(t, o.t);
      return c != 0 ? c : id.compareTo(o.id);
    }
  }

  /** Index of the first time >= x in the ascending array. */
  static int lowerBound(long[] a, int n, long x) {
    int lo = 0;
    int hi = n;
    while (lo < hi) {
      int mid = (lo + hi) >>> 1;
      if (a[mid] < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Index of the first time > x in the ascending array. */
  static int upperBound(long[] a, int n, long x) {
    int lo = 0;
    int hi = n;
    while (lo < hi) {
      int mid = (lo + hi) >>> 1;
      if (a[mid] <= x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** card_testing and impossible_travel for each payment of one card (sorted). */
  public static int[] cardBits(List<Pay> ps) {
    int n = ps.size();
    int[] bits = new int[n];
    long[] times = new long[n];
    long[] small = new long[n];
    int ns = 0;
    int[] runStart = new int[n];
    for (int k = 0; k < n; k++) {
      Pay p = ps.get(k);
      times[k] = p.t;
      if (p.amount < SMALL_AMOUNT) small[ns++] = p.t;
      boolean same = k > 0 && ps.get(k - 1).country.equals(p.country);
      runStart[k] = same ? runStart[k - 1] : k;
    }
    for (int k = 0; k < n; k++) {
      Pay p = ps.get(k);
      if (p.amount < SMALL_AMOUNT) {
        int count = upperBound(small, ns, p.t) - lowerBound(small, ns, p.t - WINDOW_US);
        if (count >= CARD_TESTING_MIN) bits[k] |= CARD_TESTING;
      }
      int lo = lowerBound(times, n, p.t - TRAVEL_US);
      int hi = lowerBound(times, n, p.t);
      if (hi > lo) {
        int last = hi - 1;
        if (!ps.get(last).country.equals(p.country) || runStart[last] > lo) bits[k] |= IMPOSSIBLE_TRAVEL;
      }
    }
    return bits;
  }

  /**
   * velocity and amount_spike for each payment of one user (sorted). {@code dropped} older
   * payments are no longer held: a payment whose 20 previous ones include dropped ones keeps
   * {@code -1} (not evaluated) unless it has 20 previous held payments.
   */
  public static int[] userBits(List<Pay> ps, int dropped) {
    int n = ps.size();
    int[] bits = new int[n];
    long[] times = new long[n];
    for (int k = 0; k < n; k++) times[k] = ps.get(k).t;
    double[] window = new double[SPIKE_HISTORY];
    for (int k = 0; k < n; k++) {
      Pay p = ps.get(k);
      if (dropped > 0 && k < SPIKE_HISTORY) {
        bits[k] = -1;
        continue;
      }
      int count = upperBound(times, n, p.t) - lowerBound(times, n, p.t - WINDOW_US);
      if (count >= VELOCITY_MIN) bits[k] |= VELOCITY;
      int from = Math.max(0, k - SPIKE_HISTORY);
      int m = k - from;
      if (m >= SPIKE_MIN_HISTORY) {
        for (int i = 0; i < m; i++) window[i] = ps.get(from + i).amount;
        Arrays.sort(window, 0, m);
        double median = (m % 2 == 1) ? window[m / 2] : (window[m / 2 - 1] + window[m / 2]) / 2.0;
        if (p.amount > SPIKE_FACTOR * median) bits[k] |= AMOUNT_SPIKE;
      }
    }
    return bits;
  }

  /** Rule names in contract order. */
  public static List<String> names(int bits) {
    List<String> out = new ArrayList<>(4);
    for (int i = 0; i < NAMES.length; i++) if ((bits & (1 << i)) != 0) out.add(NAMES[i]);
    return out;
  }

  /** 1 - prod(1 - weight) over the fired rules, rounded to 4 decimals as Python's round() does. */
  public static double score(int bits) {
    double keep = 1.0;
    for (int i = 0; i < NAMES.length; i++) if ((bits & (1 << i)) != 0) keep *= 1.0 - WEIGHTS[i];
    return new BigDecimal(1.0 - keep).setScale(4, RoundingMode.HALF_EVEN).doubleValue();
  }
}
