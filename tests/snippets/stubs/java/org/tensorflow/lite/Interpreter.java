package org.tensorflow.lite;
import java.nio.ByteBuffer;
public final class Interpreter implements InterpreterApi {
  public static class Options extends InterpreterApi.Options {
    public Options() {}
    @Override public Options setNumThreads(int numThreads) { return this; }
    @Override public Options addDelegate(Delegate delegate) { return this; }
    public Options setUseXNNPACK(boolean useXNNPACK) { return this; }
  }
  public Interpreter(ByteBuffer byteBuffer) {}
  public Interpreter(ByteBuffer byteBuffer, Options options) {}
  @Override public void run(Object input, Object output) {}
  @Override public void resizeInput(int idx, int[] dims) {}
  @Override public void allocateTensors() {}
  @Override public void close() {}
}
