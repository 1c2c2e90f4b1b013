package ai.onnxruntime;
public class OrtEnvironment implements AutoCloseable {
  public static OrtEnvironment getEnvironment() { return null; }
  public OrtSession createSession(String modelPath) throws OrtException { return null; }
  public OrtSession createSession(String modelPath, OrtSession.SessionOptions options) throws OrtException { return null; }
  public OrtSession createSession(byte[] modelArray, OrtSession.SessionOptions options) throws OrtException { return null; }
  public OrtSession createSession(byte[] modelArray) throws OrtException { return null; }
  @Override public void close() {}
}
