import java.nio.ByteBuffer
import java.nio.ByteOrder
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.nnapi.NnApiDelegate

/** ELSR x4 in LiteRT: RGB bytes in (height x width x 3), RGB bytes out (4 height x 4 width x 3).
 *  elsr_x4_int8_uint8io.tflite on the CPU (XNNPACK); elsr_x4_int8_int8io.tflite (bytes xor 0x80)
 *  for an NPU delegate such as NNAPI (export it with --fixed-shape for the delegate). */
class ElsrLiteRt(model: ByteBuffer, threads: Int = 2, private val int8Io: Boolean = false,
                 nnapi: NnApiDelegate? = null) : AutoCloseable {
    private val interpreter = Interpreter(model, Interpreter.Options().setNumThreads(threads).also { options ->
        if (nnapi != null) options.addDelegate(nnapi)
    })
    private var size = Pair(0, 0)
    private var input = ByteBuffer.allocateDirect(0)
    private var output = ByteBuffer.allocateDirect(0)

    fun upscale(rgb: ByteArray, height: Int, width: Int): ByteArray {
        if (size != Pair(height, width)) {  // resize once per frame size, not per frame
            interpreter.resizeInput(0, intArrayOf(1, height, width, 3))
            interpreter.allocateTensors()
            input = ByteBuffer.allocateDirect(height * width * 3).order(ByteOrder.nativeOrder())
            output = ByteBuffer.allocateDirect(16 * height * width * 3).order(ByteOrder.nativeOrder())
            size = Pair(height, width)
        }
        input.rewind()
        if (int8Io) for (b in rgb) input.put((b.toInt() xor 0x80).toByte()) else input.put(rgb)
        input.rewind()
        output.rewind()
        interpreter.run(input, output)
        output.rewind()
        val sr = ByteArray(output.remaining())
        output.get(sr)
        if (int8Io) for (i in sr.indices) sr[i] = (sr[i].toInt() xor 0x80).toByte()
        return sr
    }

    override fun close() = interpreter.close()
}
