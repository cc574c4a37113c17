/**
 * The errors a KMS client sees, with the `__type` names and HTTP statuses AWS documents: every KMS API
 * reference page lists its errors as "HTTP Status Code: 400" except KMSInternalException and
 * KeyUnavailableException (500), DependencyTimeoutException (503) and DryRunOperationException (412); the common errors (authentication,
 * unknown operation, serialization) come from the AWS JSON 1.1 front end, also as 400.
 */
const STATUS = {
  AccessDeniedException: 400,
  AlreadyExistsException: 400,
  DisabledException: 400,
  DryRunOperationException: 412,
  IncompleteSignatureException: 400,
  IncorrectKeyException: 400,
  InvalidAliasNameException: 400,
  InvalidCiphertextException: 400,
  InvalidKeyUsageException: 400,
  InvalidMarkerException: 400,
  InvalidSignatureException: 400,
  KMSInternalException: 500,
  KMSInvalidSignatureException: 400,
  KMSInvalidStateException: 400,
  MalformedPolicyDocumentException: 400,
  MissingAuthenticationTokenException: 400,
  NotFoundException: 400,
  RequestEntityTooLargeException: 413,
  SerializationException: 400,
  TagException: 400,
  UnknownOperationException: 400,
  UnrecognizedClientException: 400,
  UnsupportedOperationException: 400,
  ValidationException: 400,
} as const;

export type AwsErrorType = keyof typeof STATUS;

/** An error answered as `{"__type": type, "message": ...}` with the AWS status. Messages never hold secrets. */
export class KmsApiError extends Error {
  readonly type: AwsErrorType;
  readonly status: number;

  constructor(type: AwsErrorType, message: string) {
    super(message);
    this.name = type;
    this.type = type;
    this.status = STATUS[type];
  }

  /** The AWS JSON 1.1 error body. */
  body(): { __type: AwsErrorType; message: string } {
    return { __type: this.type, message: this.message };
  }
}

export function awsError(type: AwsErrorType, message: string): KmsApiError {
  return new KmsApiError(type, message);
}
