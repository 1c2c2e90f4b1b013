package org.tensorflow.lite;
public interface InterpreterApi extends AutoCloseable {
  class Options {
    public Options() {}
    public Options setNumThreads(int numThreads) { return this; }
    public Options addDelegate(Delegate delegate) { return this; }
  }
  void run(Object input, Object output);
  void resizeInput(int idx, int[] dims);
  void allocateTensors();
  @Override void close();
}
