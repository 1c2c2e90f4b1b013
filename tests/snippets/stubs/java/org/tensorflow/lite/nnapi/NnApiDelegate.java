package org.tensorflow.lite.nnapi;
import org.tensorflow.lite.Delegate;
public class NnApiDelegate implements Delegate, AutoCloseable {
  public NnApiDelegate() {}
  @Override public long getNativeHandle() { return 0; }
  @Override public void close() {}
}
