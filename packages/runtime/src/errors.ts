import { defineErrors } from '@cosigner/errors/errors';

export const runtimeErrors = defineErrors('runtime', {
  RUNTIME_FILE_NOT_PRIVATE: {
    status: 500,
    message: 'A secret or ledger file can be read by other users; restrict it to its owner (chmod 600).',
  },
  RUNTIME_DEV_BACKEND_IN_PRODUCTION: {
    status: 500,
    message: 'A development-only component was configured in production mode; refusing to start.',
  },
  RUNTIME_HOST_NOT_ALLOWED: {
    status: 403,
    message: 'The request names a Host this service is not configured to answer for (DNS rebinding guard).',
  },
  RUNTIME_ORIGIN_NOT_ALLOWED: {
    status: 403,
    message: 'The request comes from a web origin this service does not serve; browsers have no access here.',
  },
});
