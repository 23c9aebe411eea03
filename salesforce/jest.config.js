const { jestConfig } = require('@salesforce/sfdx-lwc-jest/config');

module.exports = {
    ...jestConfig,
    moduleNameMapper: {
        '^lightning/actions$': '<rootDir>/force-app/test/jest-mocks/lightning/actions'
    },
    modulePathIgnorePatterns: ['<rootDir>/.localdevserver']
};
