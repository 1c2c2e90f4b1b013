// The declarations of ONNX Runtime's Objective-C API (pod 'onnxruntime-objc', header <onnxruntime_objc/onnxruntime.h>)
// that ios/ElsrOrt.m uses, with the parameter and return types of the API reference
// (onnxruntime.ai/docs/api/objectivec): enough for `clang -fsyntax-only` to check every call the snippet makes.
#import <Foundation/Foundation.h>

NS_ASSUME_NONNULL_BEGIN

typedef NS_ENUM(int32_t, ORTLoggingLevel) {
  ORTLoggingLevelVerbose, ORTLoggingLevelInfo, ORTLoggingLevelWarning, ORTLoggingLevelError, ORTLoggingLevelFatal,
};
typedef NS_ENUM(int32_t, ORTTensorElementDataType) {
  ORTTensorElementDataTypeUndefined, ORTTensorElementDataTypeFloat, ORTTensorElementDataTypeInt8,
  ORTTensorElementDataTypeUInt8, ORTTensorElementDataTypeInt32, ORTTensorElementDataTypeUInt32,
  ORTTensorElementDataTypeInt64, ORTTensorElementDataTypeUInt64, ORTTensorElementDataTypeString,
};

@interface ORTEnv : NSObject
- (instancetype)init NS_UNAVAILABLE;
- (nullable instancetype)initWithLoggingLevel:(ORTLoggingLevel)loggingLevel error:(NSError**)error;
@end

@interface ORTValue : NSObject
- (instancetype)init NS_UNAVAILABLE;
- (nullable instancetype)initWithTensorData:(NSMutableData*)tensorData
                                elementType:(ORTTensorElementDataType)elementType
                                      shape:(NSArray<NSNumber*>*)shape
                                      error:(NSError**)error;
- (nullable NSMutableData*)tensorDataWithError:(NSError**)error;
@end

@interface ORTRunOptions : NSObject
@end

@interface ORTSessionOptions : NSObject
- (instancetype)init NS_UNAVAILABLE;
- (nullable instancetype)initWithError:(NSError**)error;
- (BOOL)setIntraOpNumThreads:(int)intraOpNumThreads error:(NSError**)error;
@end

@interface ORTCoreMLExecutionProviderOptions : NSObject
@property BOOL useCPUOnly;
@property BOOL onlyEnableForDevicesWithANE;
@end

@interface ORTSessionOptions (ORTSessionOptionsCoreMLEP)
- (BOOL)appendCoreMLExecutionProviderWithOptions:(ORTCoreMLExecutionProviderOptions*)options error:(NSError**)error;
@end

@interface ORTSession : NSObject
- (instancetype)init NS_UNAVAILABLE;
- (nullable instancetype)initWithEnv:(ORTEnv*)env
                           modelPath:(NSString*)path
                      sessionOptions:(nullable ORTSessionOptions*)sessionOptions
                               error:(NSError**)error;
- (nullable NSDictionary<NSString*, ORTValue*>*)runWithInputs:(NSDictionary<NSString*, ORTValue*>*)inputs
                                                  outputNames:(NSSet<NSString*>*)outputNames
                                                   runOptions:(nullable ORTRunOptions*)runOptions
                                                        error:(NSError**)error;
@end

NS_ASSUME_NONNULL_END
