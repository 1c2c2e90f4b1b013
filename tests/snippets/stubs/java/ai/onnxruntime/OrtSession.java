package ai.onnxruntime;
import java.util.Iterator;
import java.util.Map;
import java.util.Optional;
public class OrtSession implements AutoCloseable {
  public Result run(Map<String, ? extends OnnxTensorLike> inputs) throws OrtException { return null; }
  @Override public void close() throws OrtException {}
  public static class SessionOptions implements AutoCloseable {
    public SessionOptions() {}
    public void setIntraOpNumThreads(int numThreads) throws OrtException {}
    public void addNnapi() throws OrtException {}
    @Override public void close() {}
  }
  public static class Result implements AutoCloseable, Iterable<Map.Entry<String, OnnxValue>> {
    public OnnxValue get(int index) { return null; }
    public Optional<OnnxValue> get(String key) { return Optional.empty(); }
    public int size() { return 0; }
    @Override public Iterator<Map.Entry<String, OnnxValue>> iterator() { return null; }
    @Override public void close() {}
  }
}
