package ai.onnxruntime;
import java.nio.ByteBuffer;
import java.nio.FloatBuffer;
public class OnnxTensor extends OnnxTensorLike {
  public static OnnxTensor createTensor(OrtEnvironment env, FloatBuffer data, long[] shape) throws OrtException { throw new UnsupportedOperationException(); }
  public static OnnxTensor createTensor(OrtEnvironment env, ByteBuffer data, long[] shape) throws OrtException { throw new UnsupportedOperationException(); }
  public FloatBuffer getFloatBuffer() { return null; }
  public ByteBuffer getByteBuffer() { return null; }
  @Override public Object getValue() throws OrtException { return null; }
  @Override public void close() {}
}
