#import <Foundation/Foundation.h>
#import <onnxruntime_objc/onnxruntime.h>  // pod 'onnxruntime-objc'

/// A session for elsr_x4_int8.ort (or, with coreML, a --fixed-shape FP32 model, which CoreML takes whole).
ORTSession* _Nullable ElsrSession(NSString* modelPath, BOOL coreML, NSError** error) {
  ORTEnv* env = [[ORTEnv alloc] initWithLoggingLevel:ORTLoggingLevelWarning error:error];
  ORTSessionOptions* options = [[ORTSessionOptions alloc] initWithError:error];
  if (!env || !options || ![options setIntraOpNumThreads:2 error:error]) return nil;
  if (coreML && ![options appendCoreMLExecutionProviderWithOptions:[[ORTCoreMLExecutionProviderOptions alloc] init]
                                                             error:error]) return nil;
  return [[ORTSession alloc] initWithEnv:env modelPath:modelPath sessionOptions:options error:error];
}

/// Planar RGB floats in [0, 1] (3 x height x width) in, 3 x 4 height x 4 width out; nil (and error) on failure.
NSData* _Nullable ElsrUpscale(ORTSession* session, NSData* chw, int height, int width, NSError** error) {
  ORTValue* lr = [[ORTValue alloc] initWithTensorData:[chw mutableCopy] elementType:ORTTensorElementDataTypeFloat
                                                shape:@[ @1, @3, @(height), @(width) ] error:error];
  if (!lr) return nil;
  NSDictionary<NSString*, ORTValue*>* outputs = [session runWithInputs:@{@"lr" : lr}
                                                           outputNames:[NSSet setWithObject:@"sr"]
                                                            runOptions:nil error:error];
  return [[outputs objectForKey:@"sr"] tensorDataWithError:error];
}
