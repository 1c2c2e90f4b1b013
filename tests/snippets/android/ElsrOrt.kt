import ai.onnxruntime.OnnxTensor
import ai.onnxruntime.OrtEnvironment
import ai.onnxruntime.OrtSession
import java.nio.FloatBuffer

/** ELSR x4 in ONNX Runtime Mobile (elsr_x4_int8.ort): planar RGB floats in [0, 1] in (1 x 3 x height x width),
 *  out (1 x 3 x 4 height x 4 width). nnapi = true for a --fixed-shape model, which NNAPI takes whole. */
class ElsrOrt(model: ByteArray, threads: Int = 2, nnapi: Boolean = false) : AutoCloseable {
    private val env = OrtEnvironment.getEnvironment()
    private val session = env.createSession(model, OrtSession.SessionOptions().apply {
        setIntraOpNumThreads(threads)
        if (nnapi) addNnapi()
    })

    fun upscale(chw: FloatArray, height: Int, width: Int): FloatArray {
        val shape = longArrayOf(1, 3, height.toLong(), width.toLong())
        OnnxTensor.createTensor(env, FloatBuffer.wrap(chw), shape).use { lr ->
            session.run(mapOf("lr" to lr)).use { result ->
                val sr = (result.get(0) as OnnxTensor).floatBuffer
                return FloatArray(sr.remaining()).also { sr.get(it) }
            }
        }
    }

    override fun close() = session.close()
}
